// Package routetable is Gorouter's NATS protocol as a router sees it: the
// subjects, the router.register / router.unregister body
// ([RegistryMessage]) and [RouteTable], what a Gorouter would hold after
// those messages, fed from NATS by [WatchRoutes] (`cellctl routes`).
//
// It imports a NATS client and nothing of the project, so that the CLI links
// neither the container store nor nats-server (deps_test.go).
//
// Concurrency: a RouteTable is guarded by its own mutex; WatchRoutes calls
// back from one nats.go goroutine, in message order.
package routetable
