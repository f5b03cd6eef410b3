package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

//go:generate go tool counterfeiter -o networkfakes/fake_host_ports.go . HostPorts

// HostPorts forwards host ports to containers and masquerades the
// containers' outbound traffic. One implementation: NFTables.
type HostPorts interface {
	// Init makes what all containers share; safe to repeat.
	Init(ctx context.Context) error
	// Map forwards each HostPort of ports (on every local address) to
	// ip:ContainerPort, in one step.
	Map(ctx context.Context, guid string, ip net.IP, ports []PortMapping) error
	// Unmap removes guid's forwards (hostPorts are those its caller knows
	// of; every one that leads to guid goes); what is not there is not an
	// error.
	Unmap(ctx context.Context, guid string, hostPorts []uint16) error
	// Mapped answers the host ports mapped to each guid that has any
	// (and an empty list for a guid with only a filter).
	Mapped(ctx context.Context) (map[string][]uint16, error)
	// Held answers what the table holds of each container (Held), read
	// in one pass.
	Held(ctx context.Context) (map[string]Held, error)
	// Filter installs or replaces guid's filter (FilterSpec).
	Filter(ctx context.Context, guid string, ip net.IP, spec FilterSpec) error
	// Unfilter removes guid's filter; what is not there is not an error.
	Unfilter(ctx context.Context, guid string) error
	// Denied answers the packets dropped per guid and direction.
	Denied(ctx context.Context) (map[string]map[string]uint64, error)
}

// NFTables is HostPorts through one nftables table of the agent's own,
// ip cellagent_<network>:
//
//	map hostports      host port -> goto c_<guid>    (one element per port)
//	chain prerouting   nat, dstnat:  fib daddr type local tcp dport vmap @hostports
//	chain output       nat, dstnat:  the same for connections made on the host
//	chain postrouting  nat, srcnat:  masquerade the subnet going elsewhere, and
//	                   forwarded connections from loopback or from the subnet
//	                   itself (hairpin), so that answers come back through us
//	chain c_<guid>     tcp dport H dnat to IP:P, one rule per mapping
//
// Each container costs one netlink batch to map and one to unmap
// (hostportslink.go, github.com/google/nftables: no fork/exec), whatever
// the number of containers; Init's base chains are one `nft -f` script,
// run once per agent start, where readable nft syntax is worth an exec. CNI's portmap and the bridge plugin's
// ipMasq did the same with 36 iptables runs per container, each taking the
// xtables lock, five of them listing the whole nat table: ~50 ms of a start
// alone, and 20 concurrent starts queued behind that lock for over a
// second (BENCHMARKS.md).
type NFTables struct {
	// Network names the table: cellagent_<Network>.
	Network string
	// Subnet is the containers' subnet (masqueraded).
	Subnet string
	// Bridge is the host interface of the subnet; connections to
	// 127.0.0.1:host_port need its route_localnet.
	Bridge string
	// Sysctl is where /proc/sys is; empty means /proc/sys.
	Sysctl string
}

var _ HostPorts = NFTables{}

// chainPrefix starts every per-container chain name; a guid
// ([A-Za-z0-9][A-Za-z0-9_-]*) after it is a valid nft identifier.
const chainPrefix = "c_"

func (n NFTables) table() string { return "cellagent_" + n.Network }

func (n NFTables) Init(ctx context.Context) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return errors.New("nft not found: install the nftables package (bridge mode maps host ports with nftables)")
	}
	subnet, err := parseSubnet(n.Subnet)
	if err != nil {
		return err
	}
	t, s := "ip "+n.table(), subnet.String()
	// One transaction: the base chains are flushed and refilled, the map
	// and the containers' chains are left as they are (an agent restart
	// keeps running containers reachable). Containers addressing the
	// host's loopback or the bridge are not forwarded to host ports: the
	// filter drops them at the input hook.
	script := strings.Join(append([]string{
		"add table " + t,
		"add map " + t + " hostports { type inet_service : verdict; }",
		"add chain " + t + " prerouting { type nat hook prerouting priority -100; policy accept; }",
		"add chain " + t + " output { type nat hook output priority -100; policy accept; }",
		"add chain " + t + " postrouting { type nat hook postrouting priority 100; policy accept; }",
		"flush chain " + t + " prerouting",
		"flush chain " + t + " output",
		"flush chain " + t + " postrouting",
		"add rule " + t + " prerouting iifname " + quote(n.Bridge) + " ip daddr { 127.0.0.0/8, " + gateway(subnet).String() + " } return",
		"add rule " + t + " prerouting fib daddr type local tcp dport vmap @hostports",
		"add rule " + t + " output fib daddr type local tcp dport vmap @hostports",
		"add rule " + t + " postrouting ip saddr " + s + " ip daddr != " + s + " masquerade",
		"add rule " + t + " postrouting ct status dnat ip daddr " + s + " ip saddr 127.0.0.0/8 masquerade",
		"add rule " + t + " postrouting ct status dnat ip daddr " + s + " ip saddr " + s + " masquerade",
	}, n.filterBaseRules(s)...), "\n")
	if err := nft(ctx, script); err != nil {
		return fmt.Errorf("set up nftables table %s: %w", n.table(), err)
	}
	return nil
}

func (n NFTables) Map(ctx context.Context, guid string, ip net.IP, ports []PortMapping) error {
	if err := ValidateGUID(guid); err != nil {
		return err
	}
	ip4 := ip.To4()
	if ip4 == nil {
		return fmt.Errorf("map host ports of %s: %v is not an IPv4 address", guid, ip)
	}
	if len(ports) == 0 {
		return nil
	}
	// The bridge exists once CNI ADD made it; without route_localnet the
	// kernel drops 127.0.0.1-sourced packets routed to it.
	if err := n.routeLocalnet(); err != nil {
		return fmt.Errorf("map host ports of %s: %w", guid, err)
	}
	if err := n.mapLink(guid, ip4, ports); err != nil {
		return fmt.Errorf("map host ports of %s: %w", guid, err)
	}
	return nil
}

func (n NFTables) Unmap(ctx context.Context, guid string, hostPorts []uint16) error {
	if err := ValidateGUID(guid); err != nil {
		return err
	}
	if err := n.unmapLink(guid); err != nil {
		return fmt.Errorf("unmap host ports of %s: %w", guid, err)
	}
	return nil
}

func (n NFTables) Mapped(ctx context.Context) (map[string][]uint16, error) {
	tbl, err := n.list(ctx)
	if err != nil {
		return nil, err
	}
	return tbl.ports, nil
}

func (n NFTables) Held(ctx context.Context) (map[string]Held, error) {
	tbl, err := n.list(ctx)
	if err != nil {
		return nil, err
	}
	return tbl.held, nil
}

// list reads what the table holds per container.
func (n NFTables) list(context.Context) (nftTable, error) {
	tbl, err := n.listLink()
	if err != nil {
		return nftTable{}, fmt.Errorf("list table %s: %w", n.table(), err)
	}
	return tbl, nil
}

// nftTable is what the agent's table holds, by guid.
type nftTable struct {
	// ports are the host ports mapped to each guid with a chain
	// (c_, e_ or i_<guid>); a guid with chains only has an empty list.
	ports map[string][]uint16
	// addrs are the addresses the egress map sends to e_<guid>.
	addrs map[string][]string
	// setsOf are the log guid sets each address is in.
	setsOf map[string][]string
	// denied are the e_/i_<guid> counters' packets.
	denied map[string]map[string]uint64
	// held are the marks of each guid's batches (Held).
	held map[string]Held
}

// guidOfChain answers the guid of a per-container chain or counter, and
// the direction for a filter one.
func guidOfChain(name string) (guid, dir string, ok bool) {
	for prefix, d := range map[string]string{chainPrefix: "", egressPrefix: DirEgress, ingressPrefix: DirIngress} {
		if g, found := strings.CutPrefix(name, prefix); found && ValidateGUID(g) == nil {
			return g, d, true
		}
	}
	return "", "", false
}

func (n NFTables) routeLocalnet() error { return n.sysctl("ipv4", "route_localnet", "1") }

// sysctl sets net.<family>.conf.<bridge>.<name> unless it has value already.
func (n NFTables) sysctl(family, name, value string) error {
	return n.writeSysctl(filepath.Join("net", family, "conf", n.Bridge, name), value)
}

// writeSysctl sets the sysctl at key (a path under /proc/sys) to value,
// unless it has it already.
func (n NFTables) writeSysctl(key, value string) error {
	root := n.Sysctl
	if root == "" {
		root = "/proc/sys"
	}
	path := filepath.Join(root, key)
	name := filepath.Base(key)
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == value {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("set %s on %s: %w", name, n.Bridge, err)
	}
	return nil
}

// nft runs an nft script as one transaction.
func nft(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
