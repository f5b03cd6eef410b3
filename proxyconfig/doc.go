// Package proxyconfig owns the per-container proxy's contract with the agent:
// which ports the proxy listens on, and the Envoy v3 files that configure it.
//
// Ports. Every app port gets a TLS proxy port, counting up from 61001 and
// skipping the app's own ports and 61443 (reserved for container-to-container
// TLS); the admin listener takes the next free port after those, on 127.0.0.1.
// ValidateAppPorts rejects requests whose app ports would collide with that
// range, so a validated request never depends on the skipping.
//
// Files. The agent writes into a host directory that is bind-mounted read-only
// into the container at Config.ConfigDir (default /etc/cf-assets/envoy_config):
//
//	envoy.yaml                      bootstrap: admin, one STATIC cluster per app
//	                                port, one TLS listener per mapping with
//	                                tcp_proxy, certificates from file-based SDS
//	sds-id-cert-and-key.yaml        DiscoveryResponse with Secret id-cert-and-key
//	sds-id-validation-context.yaml  DiscoveryResponse with Secret
//	                                id-validation-context (only with client certs)
//
// The same files drive real Envoy and the bundled cellproxy (package proxy).
// Every file is written atomically (temp file in the same directory, then
// rename; no fsync, see writeFileAtomic) with mode 0600: the bootstrap points Envoy at
// the directory with watched_directory, so a rename is what triggers a reload,
// and a reader never sees half a file.
//
// This package builds the files (JSON documents, which are YAML too) from
// small structs of its own and does not link Envoy's API types: the agent
// binary stays small. Package envoyvalidate (used by tests) checks every
// generated file against go-control-plane's types.
//
// Concurrency: everything here is a pure function or writes only the files it
// is given; callers serialise writes to one directory (one container).
package proxyconfig
