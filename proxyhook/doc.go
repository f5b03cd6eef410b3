// Package proxyhook runs the TLS proxy beside each app: it picks the proxy
// ports (the Pipeline's ProxyPorts step, before the network maps host
// ports), writes the Envoy-compatible files (its Proxy step, after the
// credentials exist; each step answers its typed result, which the store
// merges, and the hook keeps its own copy of the instance it read),
// mounts them and the proxy binary,
// starts the proxy inside the container (containerd exec) right after the
// app, restarts it with backoff when it dies, rewrites its certificate on
// every rotation and confirms that the new serial is served (cellproxy:
// one POST /secrets/reload to its admin listener in the container's network
// namespace; Envoy: handshakes),
// and verifies, as a router would, that an instance presents the identity
// just issued before it becomes routable. It tells the store what happens
// to a proxy (exits, restarts, serving again, failure, unconfirmed
// rotations and drains) by containerstore notices to Config.Notices, the
// store's Inbox; it never calls the store.
//
// Concurrency: Hook.mu guards the per-instance map. Each running proxy has
// one supervisor goroutine (restartLoop, or watchInit for a cellinit-run
// proxy), ended by Stopping, Teardown, its instance's failure, or the
// Hook's Run: Run (ifrit, a member of the agent's group before the store,
// so it ends after it)
// owns them all; at its signal it ends every supervisor without touching
// its proxy, cancels their containerd calls and waits, and no supervisor
// starts after it. Tests check with goleak that none is left behind.
package proxyhook
