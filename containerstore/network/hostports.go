package network

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	// Unmap removes guid's forwards of hostPorts; what is not there is not
	// an error.
	Unmap(ctx context.Context, guid string, hostPorts []uint16) error
	// Mapped answers the host ports mapped to each guid that has any
	// (and an empty list for a guid with only a filter).
	Mapped(ctx context.Context) (map[string][]uint16, error)
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
// Each container costs one `nft -f` transaction to map and one to unmap,
// whatever the number of containers; its filter (filter.go) goes through
// netlink, without a fork/exec. CNI's portmap and the bridge plugin's
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
	t, c := "ip "+n.table(), chainPrefix+guid
	lines := []string{"add chain " + t + " " + c, "flush chain " + t + " " + c}
	var elems []string
	for _, p := range ports {
		lines = append(lines, fmt.Sprintf("add rule %s %s tcp dport %d dnat to %s:%d", t, c, p.HostPort, ip4, p.ContainerPort))
		elems = append(elems, fmt.Sprintf("%d : goto %s", p.HostPort, c))
	}
	// "add element" fails on a port that already goes elsewhere: the
	// whole transaction, rules included, is then not applied.
	lines = append(lines, "add element "+t+" hostports { "+strings.Join(elems, ", ")+" }")
	if err := nft(ctx, strings.Join(lines, "\n")); err != nil {
		return fmt.Errorf("map host ports of %s: %w", guid, err)
	}
	return nil
}

func (n NFTables) Unmap(ctx context.Context, guid string, hostPorts []uint16) error {
	if err := ValidateGUID(guid); err != nil {
		return err
	}
	t, c := "ip "+n.table(), chainPrefix+guid
	// nft 1.0.6 has no "destroy": adding first what is deleted next makes
	// the transaction succeed whether or not it was there.
	lines := []string{"add chain " + t + " " + c}
	if len(hostPorts) > 0 {
		var elems, keys []string
		for _, p := range hostPorts {
			elems = append(elems, fmt.Sprintf("%d : goto %s", p, c))
			keys = append(keys, fmt.Sprint(p))
		}
		lines = append(lines,
			"add element "+t+" hostports { "+strings.Join(elems, ", ")+" }",
			"delete element "+t+" hostports { "+strings.Join(keys, ", ")+" }")
	}
	lines = append(lines, "flush chain "+t+" "+c, "delete chain "+t+" "+c)
	if err := nft(ctx, strings.Join(lines, "\n")); err != nil {
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

// list reads the whole table.
func (n NFTables) list(ctx context.Context) (nftTable, error) {
	cmd := exec.CommandContext(ctx, "nft", "-j", "list", "table", "ip", n.table())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if strings.Contains(stderr.String(), "No such file or directory") {
			return parseTable([]byte(`{"nftables":[]}`)) // no table: nothing there
		}
		return nftTable{}, fmt.Errorf("nft list table %s: %v: %s", n.table(), err, strings.TrimSpace(stderr.String()))
	}
	return parseTable(out)
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
}

// parseMapped reads `nft -j list table` output: every c_<guid> chain, with
// the map elements that lead to it.
func parseMapped(out []byte) (map[string][]uint16, error) {
	tbl, err := parseTable(out)
	return tbl.ports, err
}

func parseTable(out []byte) (nftTable, error) {
	var doc struct {
		Nftables []struct {
			Chain *struct {
				Name string `json:"name"`
			} `json:"chain"`
			Map *struct {
				Name string              `json:"name"`
				Elem [][]json.RawMessage `json:"elem"`
			} `json:"map"`
			Set *struct {
				Name string            `json:"name"`
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
			Counter *struct {
				Name    string `json:"name"`
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nftTable{}, fmt.Errorf("parse nft -j output: %w", err)
	}
	tbl := nftTable{ports: map[string][]uint16{}, addrs: map[string][]string{}, setsOf: map[string][]string{},
		denied: map[string]map[string]uint64{}}
	for _, o := range doc.Nftables {
		if o.Chain != nil {
			if guid, _, ok := guidOfChain(o.Chain.Name); ok {
				if _, seen := tbl.ports[guid]; !seen {
					tbl.ports[guid] = nil
				}
			}
		}
		if o.Counter != nil {
			if guid, dir, ok := guidOfChain(o.Counter.Name); ok && dir != "" {
				if tbl.denied[guid] == nil {
					tbl.denied[guid] = map[string]uint64{}
				}
				tbl.denied[guid][dir] = o.Counter.Packets
			}
		}
		if o.Set != nil && strings.HasPrefix(o.Set.Name, logSetPrefix) {
			for _, e := range o.Set.Elem {
				var ip string
				if json.Unmarshal(e, &ip) == nil {
					tbl.setsOf[ip] = append(tbl.setsOf[ip], o.Set.Name)
				}
			}
		}
		if o.Map == nil {
			continue
		}
		for _, e := range o.Map.Elem {
			if len(e) != 2 {
				continue
			}
			var verdict struct {
				Goto *struct {
					Target string `json:"target"`
				} `json:"goto"`
			}
			if json.Unmarshal(e[1], &verdict) != nil || verdict.Goto == nil {
				continue
			}
			switch o.Map.Name {
			case "hostports":
				var port uint16
				if guid, ok := strings.CutPrefix(verdict.Goto.Target, chainPrefix); ok && json.Unmarshal(e[0], &port) == nil {
					tbl.ports[guid] = append(tbl.ports[guid], port)
				}
			case "egress":
				var ip string
				if guid, ok := strings.CutPrefix(verdict.Goto.Target, egressPrefix); ok && json.Unmarshal(e[0], &ip) == nil {
					tbl.addrs[guid] = append(tbl.addrs[guid], ip)
				}
			}
		}
	}
	for guid := range tbl.ports {
		slices.Sort(tbl.ports[guid])
	}
	return tbl, nil
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
	root := n.Sysctl
	if root == "" {
		root = "/proc/sys"
	}
	path := filepath.Join(root, "net", family, "conf", n.Bridge, name)
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
