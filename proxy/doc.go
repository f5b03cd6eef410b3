// Package proxy is cellproxy: the TLS-terminating sidecar that runs in every
// container beside the app, configured by the Envoy v3 files that package
// proxyconfig writes.
//
// What it owns:
//   - parsing the bootstrap (envoy.yaml) and the file-based SDS files, with
//     small types of its own (linking Envoy's API types would cost ~12 MB of
//     RSS in every container). Only the subset proxyconfig generates is
//     understood; anything else (an unknown key, filter, transport socket,
//     cipher, SAN matcher ...) is rejected at start with its field path.
//   - one TLS listener per Envoy listener: Go crypto/tls, TLS 1.2+, the
//     configured ciphers, optional client certificates (trusted CA + exact
//     DNS/URI SAN match). Each accepted connection dials the app first, so a
//     dead app shows as a failed handshake (which Gorouter retries elsewhere)
//     rather than as a completed handshake and an empty response.
//   - copying bytes both ways with half-close: EOF from one side becomes a
//     write shutdown (close_notify + FIN towards the client) on the other.
//   - watching the SDS files (stat every PollInterval: inode, size, mtime,
//     ctime) so a rename-replace swaps certificates for new handshakes while
//     open connections continue. A file that fails to load is logged and the
//     previous secret kept.
//   - the admin listener: /ready (200 "LIVE" once every listener is bound,
//     503 otherwise) and /certs (Envoy's JSON shape); and, cellproxy's own,
//     GET /secrets (the certificate secret, version and leaf serial each
//     listener gives new handshakes) and POST /secrets/reload (the same
//     check of the SDS files the poll makes, at once, then the answer of
//     GET /secrets plus what failed to load). The agent confirms a rotation
//     with one POST instead of waiting for the poll and handshaking.
//   - drain: on a signal it stops accepting, /ready turns 503 "DRAINING",
//     open connections get up to DrainTimeout to finish, the rest are closed,
//     and Run returns nil. A second signal closes them at once.
//
// Concurrency: Proxy.Run owns every goroutine: one accept loop per listener,
// two per connection pair (the handler and one copy direction), one watcher,
// one admin server. Run returns only after all of them ended. Reloads (the
// watcher's and the admin's) are serialised by reloadMu. TLS settings are
// swapped through atomic pointers, so handshakes never take a lock.
package proxy
