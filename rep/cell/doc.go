// Package cell makes cellagent a Diego cell: it places the LRPs the
// auctioneer sends (rep API /work), claims and runs them through the
// container store (the same executor.Client the /v1 API drives) and
// reports their life to BBS, as the rep's ordinary LRP processor does:
//
//	/work  -> reserve container (guid = instance guid, tags = actual LRP key)
//	       -> claim in BBS -> run
//	running and routable  -> StartActualLRP (net info)
//	desired LRP changed   -> new routes registered (routes.go)
//	store evacuating      -> evacuate_* endpoints, delete when BBS lets go (evacuate.go)
//	completed, not asked  -> CrashActualLRP (reason) -> delete container
//	stop (BBS asks)       -> delete container -> RemoveActualLRP
//
// Tasks (tasks.go) follow the rep's task processor: reserve (container
// guid = task guid), StartTask, run, CompleteTask with the exit status
// (0 = success), delete; a cancel deletes the container.
//
// A container's Diego identity lives in its tags, so after the agent
// restarts (even after kill -9) the cell finds its instances again from
// the store's recovered containers, and reports each one's current state.
// Reports are driven by the store's event stream, but each event only
// names a container: the cell reads the container's current state and
// reports that, so a replayed or missed event never reports a stale state.
// A periodic reconcile against BBS's actual LRPs for this cell removes
// records whose container is gone and containers BBS no longer knows.
//
// Concurrency: Cell.Run owns the event loop and the reconcile ticker,
// and starts the watcher of BBS's desired LRP changes (tracked by wg);
// per-instance work (claim+run, stop) runs in goroutines tracked by the
// Cell's WaitGroup, which Run waits for before it returns. mu guards the
// reported map.
package cell
