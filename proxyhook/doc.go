// Package proxyhook runs the TLS proxy beside each app: it picks the proxy
// ports (before the network maps host ports), writes the Envoy-compatible
// files (after the credentials exist), mounts them and the proxy binary,
// starts the proxy inside the container (containerd exec) right after the
// app, restarts it with backoff when it dies, rewrites its certificate on
// every rotation and confirms that the new serial is served (cellproxy:
// one POST /secrets/reload to its admin listener in the container's network
// namespace; Envoy: handshakes),
// and verifies, as a router would, that an instance presents the identity
// just issued before it becomes routable.
//
// Concurrency: Hook.mu guards the per-instance map. Each running proxy has
// one supervisor goroutine, owned by the Hook and ended by Stopping or
// Teardown. There is no runner: at agent shutdown the supervisors end with
// the process (and Store.Fail ignores them once supervision has stopped);
// an embedding program that keeps running should Teardown first.
package proxyhook
