// Package downloads brings a run request's setup downloads and cached
// dependencies onto the cell, as Diego's executor does with its
// cacheddownloader: Cache fetches an artifact over HTTP or HTTPS into a
// host-side cache under the agent's data dir (data_dir/downloads), keyed
// by its cache key, revalidated with the server on every use (ETag /
// If-None-Match, Last-Modified / If-Modified-Since), checked against the
// request's checksum (md5, sha1 or sha256; the digests of each entry are
// kept, so a cache hit is checked too), and evicted least recently used
// first when the cache passes its size bound. Extract unpacks a tgz, tar
// or zip through an os.Root: no entry name, symbolic link or hard link
// leads out of the target, device files are refused, sizes and entry
// counts are bounded. Runner runs the setup tree (serial, parallel, try,
// timeout, emit_progress around downloads) with Diego's semantics and
// writes its progress messages to the instance's log.
//
// How files reach the container: the two kinds go the two ways Diego's
// executor sends them, for the same reasons.
//
//   - A setup download (the droplet) is extracted into the container's
//     own writable layer before its process starts: the runtime mounts
//     the container's prepared rootfs snapshot on the host for the time of
//     the setup (internal/adapters binds it), and the Target writes there,
//     owned by the action's user (uid and gid from the rootfs's
//     /etc/passwd; a relative to is under that user's home). So the files
//     are the container's, writable by the app as Diego's StreamIn leaves
//     them, counted by the disk_mb check (which measures the writable
//     layer), gone with the container; the image's read-only layers are
//     never touched and nothing of the host is shared.
//   - A cached dependency (the app lifecycle) is extracted once into the
//     cache and bind-mounted read-only at its to into every container that
//     names it (Diego's dependency manager). It is shared, so it counts
//     against the cache's bound, not the instance's disk_mb. Each
//     container holds the tree it mounts (holders/GUID on disk, so a
//     restarted agent knows which trees adopted containers still use):
//     a held tree is never evicted, and a tree replaced by newer content
//     is removed only when its last holder releases it.
//
// Concurrency: Cache.mu guards the entry and holder maps only; downloads
// and extraction run without it, serialised per cache key. Runner's
// parallel actions run in goroutines it waits for.
package downloads
