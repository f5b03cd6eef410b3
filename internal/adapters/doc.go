// Package adapters binds the lower packages to the container store: each
// type implements the store's own interfaces (containerstore.SetupStep and
// Restorer of its step's result type, OrphanCleaner, RequestValidator,
// RouteHook, RouteRecoverer) over one package's manager, and translates
// between the store's Instance (read) and results and that package's
// types:
//
//   - Credentials: credmanager (issue, mount, track rotation, remove);
//     CredentialNotifier tells the store about rotations and expiry (by
//     notices to its Inbox: it holds no store);
//   - Network: containerstore/network (netns, IP, host ports, filter);
//   - Routes: routeemitter (register when routable, unregister first on
//     stop, recover journaled routes); Presence puts the store's figures in
//     the emitter's PresenceFeed;
//   - Downloads: downloads (cached dependencies as read-only mounts, the
//     setup into the container's writable rootfs through the runtime's
//     RootfsWriter, trees released at delete).
//
// So credmanager, containerstore/network, routeemitter and downloads import nothing
// of the store (their deps_test.go files check it), and the store knows
// them only by its interfaces. cmd/cellagent wires these adapters; the
// proxy's hook (proxyhook) still binds itself.
//
// The adapters hold no state of their own beyond their configuration and
// start no goroutine.
package adapters
