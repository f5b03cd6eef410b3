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
// Start: reserve (capacity) -> initialize (image, hooks: proxy ports,
// network, credentials, proxy files, bind mounts; containerd container) ->
// created (task started) -> running (readiness check passed). Stop: routes off, SIGTERM,
// stop_grace, SIGKILL, completed. Delete: stop, remove the runtime
// container, hooks' Teardown in reverse order, release the reservation.
//
// The hooks are this package's interfaces (SetupHook, RouteHook, ...); the
// ones binding credmanager, containerstore/network and routeemitter live in
// internal/adapters, proxyhook binds itself, and cmd/cellagent/wire.go
// orders them. None of those lower packages imports this one.
//
// Concurrency: Store.mu guards the container map, capacity and every
// container's fields. Long operations (containerd calls, checks) run
// without it. Each container has one lifecycle goroutine, owned by the
// Store (Store.wg) and ended by its context; opMu on each container
// serialises stop and delete. Agent shutdown cancels supervision but never
// signals a container.
package containerstore
