// Package downloads brings a run request's setup downloads and cached
// dependencies onto the cell, as Diego's executor does with its
// cacheddownloader: Cache fetches an artifact over HTTP or HTTPS into a
// host-side cache under the agent's data dir (data_dir/downloads), keyed
// by its cache key, revalidated with the server on every use (ETag /
// If-None-Match, Last-Modified / If-Modified-Since), checked against the
// request's checksum (md5, sha1 or sha256; the digests of each entry are
// kept, so a cache hit is checked too), and evicted least recently used
// first when the cache passes its size bound. A download that receives
// no byte for Config.IdleTimeout (1m) fails; the default client never
// decodes a Content-Encoding (the bytes checked are the bytes served);
// errors name URLs without their query or user info, never the URL a
// redirect led to. An entry's meta.json is removed before new content
// replaces its archive, and an archive whose size is not the recorded
// one is dropped on load. Extract unpacks a tgz, tar or zip through an
// os.Root: no entry name, symbolic link or hard link leads out of the
// target, device files are refused; an entry's kind is its tar type flag;
// the files' bytes, the entries (every tar header) and the decompressed
// tar stream are bounded (a zip's directory count is checked before it is
// read), and extraction stops with its context. Runner runs the setup tree (serial, parallel, try,
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
//     are the container's, owned by and writable for the app's user,
//     counted by the disk_mb check (which measures the writable layer;
//     the setup's downloads, parallel ones too, share one Budget of it),
//     gone with the container; the image's read-only layers are never
//     touched and nothing of the host is shared. Extraction runs as the
//     agent, not as the user as Diego's StreamIn does: it refuses to
//     replace, re-own or hard-link to an existing entry that is not the
//     user's (which the user could not either), but it does not check
//     that the user may write into the existing directories it writes
//     into (a root-owned directory of the image, say), where StreamIn
//     would fail.
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
