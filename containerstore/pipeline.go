package containerstore

import "github.com/cellagent/cellagent/executor"

// Pipeline is each container's steps. The field order is the order they
// run at initialize (Setup) and restore; Teardown runs them in reverse. A
// nil step is left out. Each field says why it sits where it does.
type Pipeline struct {
	// Downloads fetches the cached dependencies (Instance.Mounts) and runs
	// the request's setup into the container's writable rootfs: first,
	// because it needs nothing of the others and is the likeliest step to
	// fail (an unreachable blobstore, a wrong checksum), and a start that
	// fails there has taken no address, host port or certificate.
	Downloads SetupHook
	// ProxyPorts picks the proxy's port inside the container for each app
	// port (Instance.ProxyPorts, at most one per app port): first, because
	// Network maps them to host ports as well.
	ProxyPorts SetupHook
	// Network gives the container its netns, IPs and host ports (Instance
	// NetNSPath, InternalIP, ExternalIP, Ports). When it is a
	// HostPortChecker the store checks at once that a request's host ports
	// fit.
	Network SetupHook
	// Credentials issues the instance identity and mounts it: after
	// Network, because the certificate names the container's IPs.
	Credentials SetupHook
	// Proxy writes the proxy's files, runs it (Starter), waits for it
	// (Readiness) and confirms it (Verifier): after Credentials, whose
	// certificate it serves, and Network, whose ports it listens on.
	Proxy SetupHook
	// BindMounts adds the operator-allowed host directories; it needs
	// nothing of the others.
	BindMounts SetupHook
	// Routes is told when the instance becomes routable (after the running
	// and verified state) and unregisters before the app is signalled.
	Routes RouteHook
}

// Steps answers the setup steps in field order, without the nil ones.
func (p Pipeline) Steps() []SetupHook {
	var steps []SetupHook
	for _, h := range []SetupHook{p.Downloads, p.ProxyPorts, p.Network, p.Credentials, p.Proxy, p.BindMounts} {
		if h != nil {
			steps = append(steps, h)
		}
	}
	return steps
}

// hostPortsNeeded is how many host ports req maps: its app ports, and one
// proxy port per app port when the pipeline has a proxy.
func (p Pipeline) hostPortsNeeded(req *executor.RunRequest) int {
	if p.ProxyPorts != nil {
		return 2 * len(req.Ports)
	}
	return len(req.Ports)
}
