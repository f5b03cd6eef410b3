package containerstore

import (
	"context"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
)

// Instance is the working set of one container's start. The store fills
// GUID, Request, User and DiskMB; the Pipeline's steps add to the rest, in its
// field order.
type Instance struct {
	GUID    string
	Request executor.RunRequest
	User    User
	// DiskMB is the container's disk_mb (what its setup may write).
	DiskMB int

	// ProxyPorts maps each app port to its proxy port inside the container
	// (set by the proxy hook before the network hook maps host ports).
	ProxyPorts     map[uint16]uint16
	ProxyAdminPort uint16

	// Set by the network hook; in host mode the store fills them.
	NetNSPath    string
	InternalIP   string
	InternalIPv6 string
	ExternalIP   string
	Ports        []executor.PortMapping

	// Added to the container spec.
	Mounts []Mount
	Env    []string

	Credentials *executor.CredentialInfo
	// CertPEM (leaf then chain) and KeyPEM are the credentials just
	// issued, for the proxy's files. Never persisted.
	CertPEM, KeyPEM []byte
	// MemoryOverheadMB is added to the container's memory limit (the proxy's).
	MemoryOverheadMB int
	// Init, set by the proxy hook, runs the app under a first process of
	// its own (ContainerSpec.Init).
	Init *ProcessInit
}

// ContainerPorts are the ports to map to the host: app ports, then the
// proxy ports in the same order.
func (inst *Instance) ContainerPorts() []uint16 {
	ports := append([]uint16{}, inst.Request.Ports...)
	for _, p := range inst.Request.Ports {
		if pp, ok := inst.ProxyPorts[p]; ok {
			ports = append(ports, pp)
		}
	}
	return ports
}

// SetupHook is one per-container concern: Setup runs during initialize, in
// the order the hooks were given; Teardown runs at delete and at recovery
// clean-up, in reverse order, and must be safe to repeat.
type SetupHook interface {
	Name() string
	Setup(ctx context.Context, logger lager.Logger, inst *Instance) error
	Teardown(ctx context.Context, logger lager.Logger, guid string) error
}

// Restorer is a SetupHook that can reload its part of an instance adopted
// after an agent restart.
type Restorer interface {
	Restore(ctx context.Context, logger lager.Logger, inst *Instance) error
}

// OrphanCleaner is a SetupHook that can remove leftovers of containers the
// store no longer knows.
type OrphanCleaner interface {
	CleanupOrphans(ctx context.Context, logger lager.Logger, keep func(guid string) bool) error
}

// HostPortChecker is the Network step's capacity check at request time:
// whether n host ports can be allocated now (an InsufficientResources
// error if not). The store counts n from the pipeline (Pipeline.ProxyPorts).
type HostPortChecker interface {
	CheckHostPorts(n int) error
}

// RequestValidator is a SetupHook with checks of its own on run requests
// (e.g. reserved proxy ports); its errors are InvalidRequest.
type RequestValidator interface {
	ValidateRequest(req *executor.RunRequest) error
}

// Readiness is a step that must be ready, beyond the app's own check,
// before a container is running (the proxy): Ready is one attempt. Alive is the
// cheaper check the periodic health monitoring uses on running instances.
type Readiness interface {
	Ready(ctx context.Context, logger lager.Logger, inst *Instance) error
	Alive(ctx context.Context, logger lager.Logger, inst *Instance) error
}

// TCPCovering is a Readiness whose Alive also proves that the app accepts
// TCP connections on some of its ports (cellproxy dials the app before it
// answers a ClientHello); the health monitoring then skips a TCP check of
// such a port instead of making a second connection for it.
type TCPCovering interface {
	CoversTCP(inst *Instance, port uint16) bool
}

// RouteHook learns when an instance becomes routable and must unregister
// before the app is signalled.
type RouteHook interface {
	Routable(logger lager.Logger, inst *Instance) error
	Unroutable(logger lager.Logger, guid string) error
}

// RouteRecoverer is a RouteHook that, after recovery, withdraws routes of
// containers that no longer exist (route tombstones).
type RouteRecoverer interface {
	RecoverRoutes(logger lager.Logger, keep func(guid string) bool) error
}

// Starter is a SetupHook with processes of its own in the container (the
// proxy): Start runs right after the app's task starts, Adopt after an
// agent restart, Stopping before the app is signalled or once it exited.
type Starter interface {
	Start(ctx context.Context, logger lager.Logger, inst *Instance) error
	Adopt(ctx context.Context, logger lager.Logger, inst *Instance) error
	Stopping(logger lager.Logger, guid string)
}

// StartExplainer is a SetupHook whose process stands in for the app as the
// task's first process (the proxy hook's cellinit): an app that it could
// not start shows as that process's exit. StartError answers why guid's
// app did not start when the task exited with status, or nil when the
// exit is the app's own. The store then reports a start failure (no exit
// status), as for a task the runtime could not start.
type StartExplainer interface {
	StartError(guid string, status int) error
}

// Verifier is a SetupHook that must confirm an instance before it becomes
// routable (the proxy's verified handshake).
type Verifier interface {
	Verify(ctx context.Context, logger lager.Logger, inst *Instance) error
}
