package network

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/executor/netrules"
)

// FilterSpec is what a container may reach and what may reach it.
type FilterSpec struct {
	// LogGUID puts the container in the set other containers' policies
	// name.
	LogGUID string `json:"log_guid,omitempty"`
	// Egress are the cell's default rules followed by the instance's,
	// canonical (ValidateEgressRules).
	Egress []executor.EgressRule `json:"egress,omitempty"`
	// Policies are canonical (ValidatePolicies).
	Policies []executor.NetworkPolicy `json:"policies,omitempty"`
}

// Directions of a denial, the direction label of
// cellagent_network_denied_total.
const (
	DirEgress  = "egress"
	DirIngress = "ingress"
)

// Per-container chain and counter prefixes besides chainPrefix (host ports).
const (
	egressPrefix  = "e_"
	ingressPrefix = "i_"
	logSetPrefix  = "lg_"
)

// Log prefixes of the nft log statements; the kernel log line then names
// the guid (cut at 96 characters: nft allows 127 for the prefix).
const (
	logDenied  = "cellagent denied "
	logAllowed = "cellagent allowed "
)

// filterBaseRules are the filter base chains' rules, made by Init. Every
// new connection from a container goes to its e_<guid> chain (through the
// host or out of it); every one to a container that did not come through
// one of its host ports goes to its i_<guid> chain. Containers do not
// reach each other on the bridge: their ports are isolated, and the host
// answers their ARP requests (proxy_arp_pvlan), so the traffic is routed
// through the forward hook below.
func (n NFTables) filterBaseRules(subnet string) []string {
	t, br := "ip "+n.table(), n.Bridge
	return []string{
		"add map " + t + " egress { type ipv4_addr : verdict; }",
		"add map " + t + " ingress { type ipv4_addr : verdict; }",
		"add chain " + t + " forward { type filter hook forward priority 0; policy accept; }",
		"add chain " + t + " input { type filter hook input priority 0; policy accept; }",
		"add chain " + t + " filter_output { type filter hook output priority 0; policy accept; }",
		"add chain " + t + " filter_prerouting { type filter hook prerouting priority -150; policy accept; }",
		"flush chain " + t + " filter_prerouting",
		"flush chain " + t + " forward",
		"flush chain " + t + " input",
		"flush chain " + t + " filter_output",
		// A new connection from a container to a host address is judged
		// by its egress rules before the host ports' DNAT hides that
		// address: else the plain host port of every instance, on every
		// host address, would be open to every container (past
		// proxy.require_client_certs).
		"add rule " + t + " filter_prerouting iifname " + quote(br) + " ct state new fib daddr type local ip saddr vmap @egress",
		"add rule " + t + " filter_prerouting iifname " + quote(br) + " ct state new fib daddr type local drop",
		"add rule " + t + " forward ct state established,related accept",
		"add rule " + t + " forward ip daddr " + subnet + " ct status dnat accept",
		"add rule " + t + " forward ip daddr " + subnet + " ip daddr vmap @ingress",
		"add rule " + t + " forward ip daddr " + subnet + " drop",
		"add rule " + t + " forward ip saddr " + subnet + " ip saddr vmap @egress",
		"add rule " + t + " forward ip saddr " + subnet + " drop",
		"add rule " + t + " input iifname " + quote(br) + " ct state established,related accept",
		"add rule " + t + " input iifname " + quote(br) + " ip saddr vmap @egress",
		"add rule " + t + " input iifname " + quote(br) + " drop",
		// A redirect would teach a container the direct (isolated, dead)
		// path to its neighbour.
		"add rule " + t + " filter_output oifname " + quote(br) + " icmp type redirect drop",
	}
}

// gateway is the bridge's address: host-local gives the first one.
func gateway(subnet *net.IPNet) net.IP {
	v := binary.BigEndian.Uint32(subnet.IP.To4()) + 1
	return netrules.IPv4(v)
}

// Filter installs (or replaces, atomically) guid's filter: its egress and
// ingress chains, its address in the dispatch maps and in its log guid's
// set. Safe to repeat.
func (n NFTables) Filter(ctx context.Context, guid string, ip net.IP, spec FilterSpec) error {
	if err := ValidateGUID(guid); err != nil {
		return err
	}
	ip4 := ip.To4()
	if ip4 == nil {
		return fmt.Errorf("filter %s: %v is not an IPv4 address", guid, ip)
	}
	subnet, err := parseSubnet(n.Subnet)
	if err != nil {
		return err
	}
	if err := n.isolate(); err != nil {
		return fmt.Errorf("filter %s: %w", guid, err)
	}
	if err := n.filterLink(guid, ip4, gateway(subnet), spec); err != nil {
		return fmt.Errorf("filter %s: %w", guid, err)
	}
	return nil
}

// Unfilter removes guid's filter; what is not there is not an error.
func (n NFTables) Unfilter(ctx context.Context, guid string) error {
	if err := ValidateGUID(guid); err != nil {
		return err
	}
	if err := n.unfilterLink(guid); err != nil {
		return fmt.Errorf("unfilter %s: %w", guid, err)
	}
	return nil
}

// Denied answers the packets dropped for each guid and direction since its
// filter was made.
func (n NFTables) Denied(ctx context.Context) (map[string]map[string]uint64, error) {
	tbl, err := n.list(ctx)
	if err != nil {
		return nil, err
	}
	return tbl.denied, nil
}

// isolate keeps containers from reaching each other on the bridge without
// passing the forward hook. Where br_netfilter hands bridged IPv4 to the ip
// hooks (bridge-nf-call-iptables=1, as Docker and Kubernetes set it), the
// forward chain sees that traffic already, with conntrack, and nothing
// else is needed; there, isolated ports would even break the hairpin path,
// which br_netfilter bridges after the DNAT. Elsewhere every port of the
// bridge is made an isolated one (no frame from one container reaches
// another directly) and the host answers the containers' ARP requests
// (proxy_arp_pvlan), so that their traffic is routed through the forward
// hook. It is checked at each start: br_netfilter may come later (then
// every port is set again).
func (n NFTables) isolate() error {
	root := n.Sysctl
	if root == "" {
		root = "/proc/sys"
	}
	b, _ := os.ReadFile(filepath.Join(root, "net", "bridge", "bridge-nf-call-iptables"))
	isolated := strings.TrimSpace(string(b)) != "1"
	flag := map[bool]string{true: "1", false: "0"}[isolated]
	for _, s := range []string{"proxy_arp", "proxy_arp_pvlan"} {
		if err := n.sysctl("ipv4", s, flag); err != nil {
			return err
		}
	}
	if isolated {
		// The kernel holds a proxied ARP reply back by a random time up to
		// proxy_delay (0.8 s by default), so that a host on the segment can
		// answer first. No container can answer for another here (the ports
		// are isolated): the delay only slowed every new connection between
		// two containers, by up to 0.8 s on each side, and more when a
		// delayed request was lost, past nc's 2 s in the tenantnet policy
		// spec. 0 answers at once.
		if err := n.writeSysctl(filepath.Join("net", "ipv4", "neigh", n.Bridge, "proxy_delay"), "0"); err != nil {
			return err
		}
	}
	// The table is IPv4 only: without IPv6 on the bridge a container
	// cannot reach the host's services on the bridge's link-local address.
	if err := n.sysctl("ipv6", "disable_ipv6", "1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// sysfs, not `bridge link`: no fork/exec on the start path; only the
	// ports not set before (brports.go).
	return isolatePorts(filepath.Join("/sys/class/net", n.Bridge, "brif"), flag)
}

// logSet names the set of the addresses of the containers of logGUID
// (which need not be a valid nft identifier).
func logSet(logGUID string) string {
	sum := sha256.Sum256([]byte(logGUID))
	return logSetPrefix + hex.EncodeToString(sum[:8])
}

func cut(guid string) string {
	if len(guid) > 96 {
		return guid[:96]
	}
	return guid
}

func quote(s string) string { return `"` + s + `"` }

// canonicalSpec validates spec and puts its rules in canonical form.
func canonicalSpec(spec FilterSpec) (FilterSpec, error) {
	egress, err1 := netrules.ValidateEgressRules("egress_rules", spec.Egress)
	policies, err2 := netrules.ValidatePolicies("network_policies", spec.Policies)
	if err := errors.Join(err1, err2); err != nil {
		return FilterSpec{}, err
	}
	spec.Egress, spec.Policies = egress, policies
	return spec, nil
}
