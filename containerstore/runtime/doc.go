// Package runtime is cellagent's containerd adapter, the only package that
// imports containerd. It turns a containerstore.ContainerSpec into an OCI
// runtime spec (non-root user, limits, default seccomp profile, no NET_RAW,
// no_new_privs, read-only bind mounts, a network namespace path) and runs
// the container's task through containerd's v2 Go client.
//
// Preloaded rootfs directories ("preloaded:NAME") are imported once into a
// committed overlayfs snapshot; each container gets its own writable
// snapshot on top, removed with the container.
//
// Docker images ("docker://" + a normalized reference) are pulled through
// containerd's client when the namespace lacks them (pull.go): one pull of
// an image at a time, which concurrent starts wait for, bounded by the
// pull timeout and MaxPullBytes, plain HTTP only for the configured
// insecure registries, a request's login sent to the image's registry only
// and never kept; the layers are checked as an import's (unpacklimit.go:
// size, ratio, entries, no sparse entries) before they are unpacked. A
// pulled image is used only once labelled checked after that: the record
// containerd writes before the check is not (see usable).
//
// App output goes to a logging binary (Config.LoggerBinary: cellagent-logger,
// or cellagent itself; logfile.RunShimDriver) that the containerd shim
// starts, so logs keep flowing while the agent is down and no FIFO fills
// up behind a restarting agent.
//
// Cgroups reads the containers' memory and CPU figures and removes the
// cgroups a killed `runc init` leaves, on cgroup v1 and v2 hosts alike;
// nothing else in the module knows where cgroups live.
//
// All methods are safe for concurrent use; containerd serialises what it must.
package runtime
