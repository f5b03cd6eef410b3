package credmanager

//go:generate go tool counterfeiter -generate

//counterfeiter:generate . Handler
//counterfeiter:generate . ExpiryHandler
