// Package network gives each cellagent container its network: in bridge mode
// (the default) an own network namespace, an IPv4 address from a private
// subnet (in-process, plumb.go and ipam.go, as the CNI bridge and
// host-local plugins did; or through those plugins with PlumbingCNI;
// loopback up and IPv6 off are set in-process, nsprep.go), and host ports
// forwarded to the container's ports through nftables; in host mode no
// isolation at all.
//
// It owns, under <data_dir>/network/:
//
//	ports.json                  host ports in use (by guid) and in quarantine
//	containers/<guid>.json      per-container state: netns, IPs, port mappings
//	ipam/<network>/             host-local IPAM files (one file per leased IP), ours or the plugin's
//
// and on the host the namespaces /var/run/netns/<network>-<guid>, the bridge
// (cellagent0 by default), the veth pairs, and the nftables table
// ip cellagent_<network> (see NFTables): one map element per host port and
// one chain per container, plus the subnet's masquerading.
//
// # Tenant filter
//
// The same table filters, default deny (filter.go): each container has an
// e_<guid> chain for its new connections (reached from the forward and
// input hooks through the egress map, keyed by its address, and from the
// prerouting hook, before the host ports' DNAT, for those to a host
// address) and an
// i_<guid> chain for new connections to it that did not come through its
// host ports (ingress map). e_ drops loopback, link-local and the bridge
// address first, then accepts what the cell's default rules and the
// instance's own allow; i_ accepts what its policies allow (sources by log
// guid, in the lg_<hash> sets); both end in a rate-limited log and a named
// counter (e_/i_<guid>) before the drop. Filter replaces a container's
// chains in one transaction, so PUT egress never leaves it half filtered.
// Containers on the bridge reach each other only through the forward hook:
// by br_netfilter where it is on, through isolated bridge ports and proxy
// ARP, answered at once (proxy_delay 0), where it is not (a start sets the
// flag only on the ports that came since the last one, brports.go). A
// Filter reads the egress and ingress elements of its address alone
// (mapelem.go), not the whole maps. The
// rules a container got are in its state file (default rules included). After an agent restart, Restore reads the table
// once and re-applies a container's forwards or filter only where the
// table no longer holds them: every Map and Filter batch leaves a mark (a
// fingerprint of its arguments) as the comment of the map elements it adds,
// and a batch is applied by the kernel whole or not at all (restore.go).
//
// # Why not CNI's portmap
//
// portmap and the bridge plugin's ipMasq made the same forwards with 36
// iptables runs per container, each taking the xtables lock and five of them
// listing the whole nat table: ~50 ms of every start, and 20 starts at once
// queued behind that lock for over a second. NFTables needs one netlink
// batch per container to map and one to unmap, no process at all.
//
// # Pool of prepared namespaces
//
// With Config.PoolSize above 0 (pool.go) PoolRunner keeps that many
// namespaces prepared: <network>-pool.<n>, made and given veth and address
// by CNI ADD under the ID pool.<n> (the '.' keeps it from ever being taken
// for a guid), with no filter or forward, so nothing reaches or leaves them.
// Setup claims one: it takes the slot out of the pool in memory (pool.json
// is not written), writes the container's state naming the slot (PoolSlot:
// the CNI ID its Teardown uses), renames the namespace to <network>-<guid>
// with a bind mount and adds the host ports and the filter; no process runs.
// A Teardown gives a pooled namespace back (reuse.go) when the pool has room
// and the Scrubber finds nothing of the container left in it: host ports and
// filter go, the host's conntrack entries of the address are deleted
// (Conntrack, conntrack.go), the namespace is renamed back, and the slot is
// claimable once the container's state is gone. Otherwise it destroys the
// namespace (CNI DEL under the slot's ID). A Setup that finds no slot ready
// makes its namespace itself, under the next slot ID (reserved in memory;
// recovery numbers past every ID a state names), so that its Teardown can
// give it to the pool too: a burst right after the agent started would
// otherwise destroy each such namespace and miss again in the next burst.
// The refill prepares one slot at a time, once no Setup has run for
// poolQuiet and the CPUs are not busy (CPU, cpubusy.go; for at most
// poolMaxDefer). recoverPool, first thing in PoolRunner and before any
// claim, keeps the ready slots, leaves a claimed one to the container whose
// state names it and destroys the rest (half prepared, claim never finished,
// namespace gone, beyond the size, or unknown to the file).
//
// # Host ports and quarantine
//
// Host ports come from a range (40000-59999 by default) in round-robin
// order, so a port just released is the last one to be handed out again.
// A released port also stays in quarantine (3m by default) before it can be
// reused at all: a router still holding a stale route to host:port must not
// land on a different instance. Allocations and quarantine are persisted in
// ports.json so an agent restart keeps both.
//
// # Lifecycle of one container's network
//
//	Setup:    allocate ports -> write state -> create netns -> CNI ADD
//	          (+ lo up, IPv6 off)
//	          -> forward host ports -> filter -> write state (IPs)
//	  pooled: allocate ports -> claim slot -> write state (slot) -> rename
//	          netns -> forward host ports -> filter -> write state
//	Teardown: remove filter, forwards -> CNI DEL -> delete netns
//	          -> ports to quarantine -> remove state
//	returned: scrub check -> remove filter, forwards -> forget conntrack
//	          -> slot in pool.json (not ready) -> rename netns back
//	          -> ports to quarantine -> remove state -> slot ready
//
// The state file is written before anything is created on the host, so that
// after a crash (agent kill -9) CleanupOrphans finds everything to undo. A
// failed Setup rolls back whatever it made. Teardown keeps the state file
// when a step fails so that calling it again finishes the job; a second
// Teardown after a successful one is a no-op.
//
// # Host mode
//
// mode "host" is for machines without CNI plugins: no namespace (empty
// NetNSPath), the internal IP is 127.0.0.1, and each host port equals the
// container port, so the app binds directly on the host. Its limits: no
// isolation between containers or from the host, two instances asking for
// the same port conflict (the second Setup fails with ErrPortInUse), and
// there is no quarantine benefit since the port is fixed by the app.
//
// # Concurrency
//
// Setup, Teardown, Restore and CleanupOrphans may be called from many
// goroutines at once. Operations on one guid are serialised by a per-guid
// lock; CNI calls for different guids run in parallel. The port allocator is
// guarded by its own mutex, the pool by its own. The package's one
// goroutine is PoolRunner's, an ifrit member (the go-cni library starts
// and waits for short-lived ones inside Setup, and so do Create and
// prepareNetNS, each on a locked OS thread that enters a namespace and
// leaves it, or stays locked and ends).
package network
