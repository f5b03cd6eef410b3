package containerstore

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
)

// Pipeline is each container's steps. The field order is the order they
// run at initialize (Setup) and restore; Teardown runs them in reverse. A
// nil step is left out. Each field says why it sits where it does.
//
// A step reads a copy of the instance as the earlier steps left it (plus
// the request) and answers a result of its own type; the store merges
// the result into the instance (Result), so a step cannot write another
// step's fields, and a field takes only a step of its kind: the order is
// checked by the compiler (runSetup, runRestore).
type Pipeline struct {
	// Downloads fetches the cached dependencies (DownloadsResult's
	// mounts) and runs the request's setup into the container's writable
	// rootfs: first, because it needs nothing of the others and is the
	// likeliest step to fail (an unreachable blobstore, a wrong checksum),
	// and a start that fails there has taken no address, host port or
	// certificate.
	Downloads SetupStep[DownloadsResult]
	// ProxyPorts picks the proxy's port inside the container for each app
	// port (ProxyPortsResult, at most one per app port): first, because
	// Network maps them to host ports as well.
	ProxyPorts SetupStep[ProxyPortsResult]
	// Network gives the container its netns, IPs and host ports
	// (NetworkResult). When it is a HostPortChecker the store checks at
	// once that a request's host ports fit. Without one, or in host mode,
	// the store fills the host's addresses here (defaultHostNetwork).
	Network SetupStep[NetworkResult]
	// Credentials issues the instance identity and mounts it
	// (CredentialsResult): after Network, because the certificate names
	// the container's IPs.
	Credentials SetupStep[CredentialsResult]
	// Proxy writes the proxy's files (ProxyResult), runs it (Starter),
	// waits for it (Readiness) and confirms it (Verifier): after
	// Credentials, whose certificate it serves, and Network, whose ports
	// it listens on.
	Proxy SetupStep[ProxyResult]
	// BindMounts adds the operator-allowed host directories
	// (BindMountsResult); it needs nothing of the others.
	BindMounts SetupStep[BindMountsResult]
	// Routes is told when the instance becomes routable (after the running
	// and verified state) and unregisters before the app is signalled.
	Routes RouteHook
}

// Steps answers the setup steps in field order, without the nil ones: what
// the store asks for the optional interfaces (Starter, Readiness, ...) and
// tears down in reverse.
func (p Pipeline) Steps() []Step {
	var steps []Step
	for _, h := range []Step{p.Downloads, p.ProxyPorts, p.Network, p.Credentials, p.Proxy, p.BindMounts} {
		if h != nil {
			steps = append(steps, h)
		}
	}
	return steps
}

// Setup runs the setup steps on inst as the store's initialize does, but
// for host mode's addresses: for the steps' own tests, which then see
// what the store would give them and merge.
func (p Pipeline) Setup(ctx context.Context, logger lager.Logger, inst *Instance) error {
	return p.runSetup(ctx, logger, inst, func(*Instance) {})
}

// Restore runs the steps' Restore on inst as an adoption does.
func (p Pipeline) Restore(ctx context.Context, logger lager.Logger, inst *Instance) error {
	return p.runRestore(ctx, logger, inst)
}

// runSetup runs the setup steps in field order, each on a copy of inst,
// and merges each result into inst before the next step reads it. hostNet
// fills what a host-mode network leaves empty, at the Network step's place.
func (p Pipeline) runSetup(ctx context.Context, logger lager.Logger, inst *Instance, hostNet func(*Instance)) error {
	if err := setup(ctx, logger, inst, p.Downloads); err != nil {
		return err
	}
	if err := setup(ctx, logger, inst, p.ProxyPorts); err != nil {
		return err
	}
	if err := setup(ctx, logger, inst, p.Network); err != nil {
		return err
	}
	hostNet(inst)
	if err := setup(ctx, logger, inst, p.Credentials); err != nil {
		return err
	}
	if err := setup(ctx, logger, inst, p.Proxy); err != nil {
		return err
	}
	return setup(ctx, logger, inst, p.BindMounts)
}

// runRestore runs the steps that are Restorers in field order, as
// runSetup does, after an agent restart.
func (p Pipeline) runRestore(ctx context.Context, logger lager.Logger, inst *Instance) error {
	if err := restore(ctx, logger, inst, p.Downloads); err != nil {
		return err
	}
	if err := restore(ctx, logger, inst, p.ProxyPorts); err != nil {
		return err
	}
	if err := restore(ctx, logger, inst, p.Network); err != nil {
		return err
	}
	if err := restore(ctx, logger, inst, p.Credentials); err != nil {
		return err
	}
	if err := restore(ctx, logger, inst, p.Proxy); err != nil {
		return err
	}
	return restore(ctx, logger, inst, p.BindMounts)
}

func setup[R Result](ctx context.Context, logger lager.Logger, inst *Instance, step SetupStep[R]) error {
	if step == nil {
		return nil
	}
	res, err := step.Setup(ctx, logger, inst.clone())
	if err != nil {
		return &failure{executor.FailureSetup, fmt.Errorf("%s: %w", step.Name(), err)}
	}
	res.merge(inst)
	return nil
}

func restore[R Result](ctx context.Context, logger lager.Logger, inst *Instance, step SetupStep[R]) error {
	r, ok := step.(Restorer[R])
	if !ok {
		return nil
	}
	res, err := r.Restore(ctx, logger, inst.clone())
	if err != nil {
		return fmt.Errorf("restore %s: %w", step.Name(), err)
	}
	res.merge(inst)
	return nil
}

// clone answers a copy of inst that shares nothing a step could write
// through (maps, slices, pointers): a step's input.
func (inst *Instance) clone() Instance {
	c := *inst
	c.ProxyPorts = maps.Clone(inst.ProxyPorts)
	c.Ports = slices.Clone(inst.Ports)
	c.Mounts = slices.Clone(inst.Mounts)
	c.Env = slices.Clone(inst.Env)
	c.CertPEM, c.KeyPEM = slices.Clone(inst.CertPEM), slices.Clone(inst.KeyPEM)
	if inst.Credentials != nil {
		cr := *inst.Credentials
		c.Credentials = &cr
	}
	if inst.Init != nil {
		in := *inst.Init
		c.Init = &in
	}
	return c
}

// Result is one step's output; merge writes it into the instance, and
// only the fields its step owns (pipeline_test checks which).
type Result interface {
	merge(inst *Instance)
}

// DownloadsResult is the Downloads step's: the cached dependencies'
// mounts.
type DownloadsResult struct {
	Mounts []Mount
}

func (r DownloadsResult) merge(inst *Instance) { inst.Mounts = append(inst.Mounts, r.Mounts...) }

// ProxyPortsResult is the ProxyPorts step's: the proxy's port inside the
// container per app port, its admin port, and the memory it adds to the
// container's limit. A zero result: no proxy.
type ProxyPortsResult struct {
	Ports            map[uint16]uint16
	AdminPort        uint16
	MemoryOverheadMB int
}

func (r ProxyPortsResult) merge(inst *Instance) {
	inst.ProxyPorts, inst.ProxyAdminPort, inst.MemoryOverheadMB = r.Ports, r.AdminPort, r.MemoryOverheadMB
}

// NetworkResult is the Network step's. An empty address leaves the
// instance's as it was (host mode; a restore keeps the recorded one).
type NetworkResult struct {
	NetNSPath                            string
	InternalIP, InternalIPv6, ExternalIP string
	// Ports pairs each app port with its host port and its proxy port's
	// mappings.
	Ports []executor.PortMapping
}

func (r NetworkResult) merge(inst *Instance) {
	inst.NetNSPath = r.NetNSPath
	for _, f := range []struct {
		to *string
		v  string
	}{
		{&inst.InternalIP, r.InternalIP}, {&inst.InternalIPv6, r.InternalIPv6}, {&inst.ExternalIP, r.ExternalIP}} {
		if f.v != "" {
			*f.to = f.v
		}
	}
	inst.Ports = r.Ports
}

// CredentialsResult is the Credentials step's: the identity's mounts and
// environment (none at a restore), what the API shows of it, and the
// certificate and key just issued or adopted, for the proxy's files.
type CredentialsResult struct {
	Mounts          []Mount
	Env             []string
	Info            *executor.CredentialInfo
	CertPEM, KeyPEM []byte
}

func (r CredentialsResult) merge(inst *Instance) {
	inst.Mounts = append(inst.Mounts, r.Mounts...)
	inst.Env = append(inst.Env, r.Env...)
	inst.Credentials, inst.CertPEM, inst.KeyPEM = r.Info, r.CertPEM, r.KeyPEM
}

// ProxyResult is the Proxy step's: its files' and binaries' mounts, and
// the container's first process when the proxy runs under it.
type ProxyResult struct {
	Mounts []Mount
	Init   *ProcessInit
}

func (r ProxyResult) merge(inst *Instance) {
	inst.Mounts = append(inst.Mounts, r.Mounts...)
	if r.Init != nil {
		inst.Init = r.Init
	}
}

// BindMountsResult is the BindMounts step's: the checked bind mounts.
type BindMountsResult struct {
	Mounts []Mount
}

func (r BindMountsResult) merge(inst *Instance) { inst.Mounts = append(inst.Mounts, r.Mounts...) }

// hostPortsNeeded is how many host ports req maps: its app ports, and one
// proxy port per app port when the pipeline has a proxy.
func (p Pipeline) hostPortsNeeded(req *executor.RunRequest) int {
	if p.ProxyPorts != nil {
		return 2 * len(req.Ports)
	}
	return len(req.Ports)
}
