package network

// Exported for tests only.
var (
	ExternalIPFrom = externalIPFrom
	MasqChainName  = masqChainName
)
