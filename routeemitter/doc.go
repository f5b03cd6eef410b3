// Package routeemitter announces the cell's routable instances to Gorouter
// over NATS and publishes the cell's presence for orchestrators.
//
// It owns:
//   - the NATS connection (nats.go, reconnecting forever); when no NATS URL
//     is configured it connects to the embedded server (package embeddednats,
//     started separately) with the credential of package natsauth;
//   - Gorouter's protocol: router.greet on connect (retried every second, up to
//     30 tries), router.start, and router.register / router.unregister bodies
//     ([routetable.RegistryMessage], built by the pure [BuildMessages]);
//   - the route table of this cell: what is registered, re-sent every
//     minimumRegisterIntervalInSeconds; tombstones of what was unregistered,
//     repeated at +5s, +15s, +30s and +60s because a lost unregister leaves a
//     TLS endpoint in Gorouter forever;
//   - the route journal (<data_dir>/routeemitter/routes.json), so that after an
//     agent restart the routes of containers that are gone can be unregistered
//     ([Emitter.Recover]; kept guids not registered again within
//     Config.AdoptionGrace are unregistered too);
//   - cell presence: a JSON document per cell in the JetStream key-value bucket
//     "cellagent-cells", expiring by bucket TTL when the cell stops publishing;
//     on a server without JetStream (CF's NATS), the same document on the
//     plain subject "cellagent.presence.<cell id>" ([PresenceSubjectPrefix]).
//
// Its sub-packages keep what other binaries need apart from it:
// routetable (the message body and subjects, and a Gorouter-like view of
// the traffic for `cellctl routes --watch`), natsauth (the embedded
// server's credential file) and embeddednats (the server itself, the only
// importer of nats-server). `cellctl` links the first two only.
//
// The container side (which instance is routable, with which IPs and ports) is
// decided by the agent and handed in through [Emitter.Register] and
// [Emitter.Unregister]; this package never looks at containers.
//
// Shutdown of the [Emitter] leaves routes registered: the agent restarts and
// adopts running containers, and unregistering on every agent restart would
// cause the 502s it is meant to avoid. Only the presence key is deleted.
//
// Concurrency: the Emitter's route state is guarded by one mutex (Emitter.mu).
// One goroutine, the Run loop, does all scheduled work: woken by a one-second
// clock ticker or by a poke, it compares absolute deadlines with the clock
// and re-emits registrations, repeats tombstones, retries router.greet,
// unregisters journaled routes nobody claimed within the adoption grace, and
// reacts to router.start and to reconnects. NATS callbacks only record what
// happened and wake the loop.
// Presence runs in a second goroutine started and awaited by Run. Register and
// Unregister may be called from any goroutine, before or during Run. All time
// comes from the configured clock.Clock, except timeouts inside nats.go and
// nats-server (connection, flush and JetStream request timeouts).
//
// Timeline of one instance:
//
//	Register ──► registered ──(every interval, jittered)──► router.register
//	    ▲             │
//	    │         Unregister: router.unregister now (flushed), then tombstone
//	    │             ▼
//	    └──────── tombstone ──(+5s, +15s, +30s, +60s)──► router.unregister ──► gone
package routeemitter
