package network

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"code.cloudfoundry.org/clock"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/executor/netrules"
)

// Modes of Config.Mode.
const (
	ModeBridge = "bridge"
	ModeHost   = "host"
)

// Config configures a Manager. Start from DefaultConfig and override.
type Config struct {
	// Mode is ModeBridge (own netns, IP via CNI) or ModeHost (no isolation).
	Mode string
	// Subnet is the IPv4 subnet the containers' addresses come from (bridge mode).
	Subnet string
	// HostPortRange is "FIRST-LAST", inclusive.
	HostPortRange string
	// ExternalIP is the address routes point at; empty means DefaultExternalIP().
	ExternalIP string
	// PortQuarantine is how long a released host port is not handed out
	// again; 0 disables the quarantine.
	PortQuarantine time.Duration
	// DataDir is the agent's data dir; this package uses DataDir/network.
	DataDir string
	// Plumbing is how bridge mode makes a namespace's veth and address:
	// PlumbingNetlink (the default, in-process) or PlumbingCNI (the
	// bridge and host-local plugins).
	Plumbing string
	// PluginDirs are searched for the CNI plugin binaries (PlumbingCNI).
	PluginDirs []string
	// BridgeName is the Linux bridge the containers' veths are attached to.
	BridgeName string
	// NetworkName names the CNI network and prefixes the netns names
	// (<NetworkName>-<guid>) and names the nftables table (cellagent_<NetworkName>). It has no '-', so
	// no network's netns names are a prefix of another's. Two agents on one
	// machine must use different names, bridges and subnets.
	NetworkName string
	// PoolSize is how many network namespaces (with veth and address) are
	// kept prepared for starts to claim (bridge mode); 0 turns the pool off.
	PoolSize int
	// ReturnDelay is how long a namespace given back to the pool at a
	// delete waits before a start may claim it. The wiring sets it to the
	// port quarantine when routes name container addresses
	// (routing.instance_address), so that a router's stale route to the
	// old container's address cannot land on the next one; with host
	// ports the port quarantine already does that and it is 0.
	ReturnDelay time.Duration
	// Clock drives the quarantine; nil means the real clock.
	Clock clock.Clock
	// DefaultEgress are the egress rules every container gets before its
	// own (network.egress.default); nil means DefaultEgress(), empty
	// means none: a container then reaches nothing it has no rule for.
	DefaultEgress []executor.EgressRule
}

// DefaultConfig returns the configuration used when the agent's config file
// says nothing about the network.
func DefaultConfig() Config {
	return Config{
		Mode:           ModeBridge,
		Subnet:         "10.255.0.0/22",
		HostPortRange:  "40000-59999",
		PortQuarantine: 3 * time.Minute,
		DataDir:        "/var/lib/cellagent",
		Plumbing:       PlumbingNetlink,
		PluginDirs:     []string{"/usr/lib/cni", "/opt/cni/bin"},
		BridgeName:     "cellagent0",
		NetworkName:    "cellagent",
	}
}

// MaxPoolSize bounds Config.PoolSize: each pooled namespace holds an
// address of the subnet.
const MaxPoolSize = 256

var (
	guidPattern        = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)
	networkNamePattern = regexp.MustCompile(`^[a-z][a-z0-9]{0,31}$`)
)

// ErrInvalidGUID is returned for a guid that cannot be used in a file or
// namespace name.
var ErrInvalidGUID = errors.New("invalid container guid")

// ValidateGUID checks a container guid before it is used in a path, a netns
// name or a CNI container ID: [A-Za-z0-9][A-Za-z0-9_-]{0,127}. That is a
// subset of what CNI accepts as a container ID, and <network>-<guid> stays
// well under the 255 bytes of a netns (file) name. The guid never becomes an
// interface name (the bridge plugin names the host veth itself, the
// container side is always eth0), so the 15-byte IFNAMSIZ limit does not
// apply to it.
func ValidateGUID(guid string) error {
	if !guidPattern.MatchString(guid) {
		return fmt.Errorf("%w: %q (want [A-Za-z0-9][A-Za-z0-9_-]{0,127})", ErrInvalidGUID, guid)
	}
	return nil
}

// Validate returns every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch c.Mode {
	case ModeBridge, ModeHost:
	default:
		add("network mode %q: must be %q or %q", c.Mode, ModeBridge, ModeHost)
	}
	if _, err := parseSubnet(c.Subnet); err != nil {
		add("network subnet: %w", err)
	}
	if _, _, err := ParsePortRange(c.HostPortRange); err != nil {
		add("network host_port_range: %w", err)
	}
	if c.ExternalIP != "" && net.ParseIP(c.ExternalIP) == nil {
		add("network external_ip %q: not an IP address", c.ExternalIP)
	}
	if c.PortQuarantine < 0 {
		add("network port_quarantine %s: must not be negative", c.PortQuarantine)
	}
	if c.PoolSize < 0 || c.PoolSize > MaxPoolSize {
		add("network pool_size %d: want 0 (off) to %d", c.PoolSize, MaxPoolSize)
	}
	if c.DataDir == "" || !filepath.IsAbs(c.DataDir) {
		add("network data dir %q: must be an absolute path", c.DataDir)
	}
	if !networkNamePattern.MatchString(c.NetworkName) {
		add("network name %q: want [a-z][a-z0-9]{0,31}", c.NetworkName)
	}
	if c.Mode == ModeBridge {
		switch c.Plumbing {
		case PlumbingNetlink:
		case PlumbingCNI:
			if len(c.PluginDirs) == 0 {
				add("network plugin dirs: none given")
			}
		default:
			add("network plumbing %q: want %q or %q", c.Plumbing, PlumbingNetlink, PlumbingCNI)
		}
		if err := validateIfName(c.BridgeName); err != nil {
			add("network bridge name %q: %w", c.BridgeName, err)
		}
	}
	if _, err := netrules.ValidateEgressRules("network.egress.default", c.DefaultEgress); err != nil {
		add("%w", err)
	}
	return errors.Join(errs...)
}

func validateIfName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return errors.New("empty or a dot name")
	case len(name) > 15:
		return errors.New("longer than 15 bytes")
	case strings.ContainsAny(name, "/: \t\n"):
		return errors.New("contains '/', ':' or whitespace")
	}
	return nil
}

func parseSubnet(s string) (*net.IPNet, error) {
	ip, ipnet, err := net.ParseCIDR(s)
	if err != nil {
		return nil, fmt.Errorf("%q: not a CIDR", s)
	}
	if ip.To4() == nil {
		return nil, fmt.Errorf("%q: not IPv4", s)
	}
	if !ip.Equal(ipnet.IP) {
		return nil, fmt.Errorf("%q: host bits set (did you mean %s?)", s, ipnet)
	}
	if ones, _ := ipnet.Mask.Size(); ones > 29 {
		return nil, fmt.Errorf("%q: too small, need at least a /29", s)
	}
	return ipnet, nil
}

// ParsePortRange parses "FIRST-LAST" (inclusive, 1 <= FIRST <= LAST <= 65535).
func ParsePortRange(s string) (first, last uint16, err error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want FIRST-LAST", s)
	}
	a, errA := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	b, errB := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if errA != nil || errB != nil {
		return 0, 0, fmt.Errorf("%q: ports must be numbers in 1-65535", s)
	}
	if a == 0 || a > b {
		return 0, 0, fmt.Errorf("%q: want 1 <= FIRST <= LAST <= 65535", s)
	}
	return uint16(a), uint16(b), nil
}

// withDefaults fills the fields a caller may leave empty.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Mode == "" {
		c.Mode = d.Mode
	}
	if c.Subnet == "" {
		c.Subnet = d.Subnet
	}
	if c.HostPortRange == "" {
		c.HostPortRange = d.HostPortRange
	}
	if c.DataDir == "" {
		c.DataDir = d.DataDir
	}
	if c.Plumbing == "" {
		c.Plumbing = d.Plumbing
	}
	if len(c.PluginDirs) == 0 {
		c.PluginDirs = d.PluginDirs
	}
	if c.BridgeName == "" {
		c.BridgeName = d.BridgeName
	}
	if c.NetworkName == "" {
		c.NetworkName = d.NetworkName
	}
	if c.Clock == nil {
		c.Clock = clock.NewClock()
	}
	if c.DefaultEgress == nil {
		c.DefaultEgress = DefaultEgress()
	}
	return c
}
