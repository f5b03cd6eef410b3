package containerstore

import (
	"context"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
)

// Instance is the working set of one container's start. The store fills
// GUID, Request, User and DiskMB; it merges the Pipeline's steps' results
// into the rest, in its field order (pipeline.go). A step's Setup and
// Restore read a copy; the later calls (Starter, Readiness, Verifier,
// RouteHook) get the store's instance, which they must not write.
type Instance struct {
	GUID    string
	Request executor.RunRequest
	User    User
	// DiskMB is the container's disk_mb (what its setup may write).
	DiskMB int

	// ProxyPorts maps each app port to its proxy port inside the container
	// (ProxyPortsResult, before the Network step maps host ports).
	ProxyPorts     map[uint16]uint16
	ProxyAdminPort uint16

	// NetworkResult; in host mode the store fills the empty ones at the
	// Network step (defaultHostNetwork), before the later steps read them.
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
	// Init, from ProxyResult, runs the app under a first process of
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

// Step is what every Pipeline step is: Teardown runs at delete and at
// recovery clean-up, in reverse order, and must be safe to repeat. The
// optional interfaces below (Starter, Readiness, ...) are asked of it.
type Step interface {
	Name() string
	Teardown(ctx context.Context, logger lager.Logger, guid string) error
}

type processesMayRunKey struct{}

// ProcessesMayRun says, in a Step's Teardown, that the runtime could not
// delete the container, so its processes may still run: a step must not
// hand out again what they may still use (a pooled network namespace).
func ProcessesMayRun(ctx context.Context) bool {
	v, _ := ctx.Value(processesMayRunKey{}).(bool)
	return v
}

// SetupStep is a Step that runs during initialize, in the Pipeline's
// order: Setup reads in, a copy of the instance as the earlier steps left
// it (writing to it changes nothing), and answers its result, which the
// store merges.
type SetupStep[R Result] interface {
	Step
	Setup(ctx context.Context, logger lager.Logger, in Instance) (R, error)
}

// Restorer is a SetupStep that can reload its part of an instance adopted
// after an agent restart, as Setup does: the store merges the result.
type Restorer[R Result] interface {
	Restore(ctx context.Context, logger lager.Logger, in Instance) (R, error)
}

// OrphanCleaner is a Step that can remove leftovers of containers the
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

// RequestValidator is a Step with checks of its own on run requests
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

// CheckCovering is a Readiness whose Alive also answers for the app's own
// check: it proves that the app accepts TCP connections on a port
// (cellproxy dials the app before it answers a ClientHello), or the
// check is run elsewhere and Alive answers its last result (cellinit runs
// it in the container). The health monitoring then skips that check
// instead of making a connection of its own for it.
type CheckCovering interface {
	CoversCheck(inst *Instance, check *executor.Check) bool
}

// LivenessReporter is a Readiness whose liveness checks run outside the
// store (cellinit runs them in the container) and reach it as Liveness
// notices. ReportedLiveness answers, without a check of its own, why they
// last reported failing, or nil when they passed, or when none reported.
// An adoption's first route asks it (routeTurn): no readiness check ran
// since the restart, the report is the freshest word on the app, and a
// Liveness notice queued before that route is settled by it. So does the
// route after a restarted proxy answers again (servingRoute): the proxy's
// answer says nothing of the app.
type LivenessReporter interface {
	ReportedLiveness(inst *Instance) error
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

// Starter is a Step with processes of its own in the container (the
// proxy): Start runs right after the app's task starts, Adopt after an
// agent restart, Stopping before the app is signalled or once it exited.
type Starter interface {
	Start(ctx context.Context, logger lager.Logger, inst *Instance) error
	Adopt(ctx context.Context, logger lager.Logger, inst *Instance) error
	Stopping(logger lager.Logger, guid string)
}

// StartExplainer is a Step whose process stands in for the app as the
// task's first process (the proxy hook's cellinit): an app that it could
// not start shows as that process's exit. StartError answers why guid's
// app did not start when the task exited with status, or nil when the
// exit is the app's own. The store then reports a start failure (no exit
// status), as for a task the runtime could not start.
type StartExplainer interface {
	StartError(guid string, status int) error
}

// AdoptConfirmer is a Verifier that can tell, when an instance is adopted
// after an agent restart, that it still serves what its last Verify
// confirmed (nothing changed since): the adoption's first route then does
// not Verify it again. At 500 instances those handshakes were most of a
// restart's CPU (issue 16).
type AdoptConfirmer interface {
	ConfirmedAtAdoption(inst *Instance) bool
}

// Verifier is a Step that must confirm an instance before it becomes
// routable (the proxy's verified handshake).
type Verifier interface {
	Verify(ctx context.Context, logger lager.Logger, inst *Instance) error
}
