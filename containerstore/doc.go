// Package containerstore owns cellagent's containers: the per-container
// state machine, capacity accounting, reservation expiry, the ordered start
// and stop of each container's parts, and recovery after an agent restart.
//
// State diagram (transitions.go holds the only table; transition is the
// only writer of a container's state):
//
//	reserved ──> initializing ──> created ──> running
//	   │              │              │           │
//	   └──────────────┴──────────────┴───────────┴──> completed
//
// Start: reserve (capacity) -> initialize (image, the Pipeline's steps:
// downloads, proxy ports, network, credentials, proxy, bind mounts;
// containerd container) -> created (task started) -> running (readiness check
// passed); once verified the instance is routable (a flag, not a state:
// the Pipeline's Routes registers it). Stop:
// routes off, SIGTERM, stop_grace, SIGKILL, completed. Delete: stop,
// remove the runtime container, the steps' Teardown in reverse order,
// release the reservation.
//
// Pipeline (pipeline.go) names each step in a field; the field order is
// the step order, with the reason for each position beside it. Each field
// is a SetupStep[R] with a result type of its own (NetworkResult,
// ProxyResult, ...), Nomad's hook request and response: a step's Setup
// and Restore read a copy of the Instance as the earlier steps left it and
// answer their result, which the store merges into the Instance (only
// that step's fields: pipeline_internal_test checks which). No step holds
// or writes the Instance, and a field takes only a step of its kind, so
// the compiler checks the order. The optional interfaces (Starter,
// Readiness, Verifier, OrphanCleaner, ...) are asked of the steps and get
// the store's *Instance to read only (readonly_steps_test checks that
// proxyhook and internal/adapters never assign through it); Routes is a
// RouteHook. The steps binding credmanager, containerstore/network
// and routeemitter live in internal/adapters, proxyhook binds itself, and
// cmd/cellagent/wire.go fills the Pipeline once. None of those lower
// packages imports this one.
//
// Notices (notices.go): the parts that run beside the store (the proxy's
// supervisor and rotations, the credential manager's rotations and expiry)
// never call it; they send typed notices (ProxyExited, ProxyRestarting,
// ProxyServing, Liveness, Failed, CredentialsRotated, Note) to its Inbox, made
// before them and the store. The store's Run loop hands each one to its
// instance's lifecycle goroutine, which applies them in order with its
// own health checks: it alone routes and unroutes a running instance. A
// Failed notice stops the instance at once (as a Stop, even mid-start).
//
// Presence: the other way, the store tells Deps.Presence its figures
// (capacity, container count, evacuating) at New and at every change of
// them; the agent puts them in the route emitter's presence feed, so the
// emitter, made before the store (which registers routes through it),
// never calls the store either.
//
// Concurrency: Store.mu guards the container map, capacity and every
// container's fields. Long operations (containerd calls, checks) run
// without it. Each container has one lifecycle goroutine, owned by the
// Store (Store.wg) and ended by its context; opMu on each container
// serialises stop and delete. No lock is held while a step or the route
// hook talks to the network: registration order (a stop's unregister
// comes last, before SIGTERM) is kept by routing turns (routes.go), and an
// unroute ends the Verify of a turn in flight instead of waiting for it. Agent shutdown cancels supervision but never
// signals a container.
package containerstore
