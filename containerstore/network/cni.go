package network

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	gocni "github.com/containerd/go-cni"
)

//go:generate go tool counterfeiter -o networkfakes/fake_cni.go . CNI

// CNI is the part of go-cni's CNI the Manager uses; gocni.CNI satisfies it.
type CNI interface {
	Setup(ctx context.Context, id string, path string, opts ...gocni.NamespaceOpts) (*gocni.Result, error)
	Remove(ctx context.Context, id string, path string, opts ...gocni.NamespaceOpts) error
}

var _ CNI = gocni.CNI(nil)

//go:generate go tool counterfeiter -o networkfakes/fake_masquerade_cleaner.go . MasqueradeCleaner

// MasqueradeCleaner removes the masquerade rules the bridge plugin made for a
// container. The bridge plugin's DEL finds the container's addresses inside
// the netns; when the netns is already gone it leaves those rules behind, so
// Teardown sweeps them with the addresses it persisted.
type MasqueradeCleaner interface {
	RemoveMasquerade(ctx context.Context, network, containerID string, ips []net.IP) error
}

// containerIfName is the container side of the veth; go-cni names it
// <prefix><index> and our conflist is loaded first.
const containerIfName = "eth0"

// requiredPlugins are the CNI plugin binaries bridge mode runs.
var requiredPlugins = []string{"loopback", "bridge", "host-local", "portmap"}

// ConfList returns the CNI network configuration list of bridge mode:
// bridge (gateway, masquerade, hairpin) with host-local IPAM whose files live
// in ipamDir, then portmap with SNAT so 127.0.0.1:host_port works too.
func ConfList(cfg Config, ipamDir string) ([]byte, error) {
	subnet, err := parseSubnet(cfg.Subnet)
	if err != nil {
		return nil, fmt.Errorf("conflist: %w", err)
	}
	type obj = map[string]any
	conf := obj{
		"cniVersion": "1.0.0",
		"name":       cfg.NetworkName,
		"plugins": []obj{
			{
				"type":        "bridge",
				"bridge":      cfg.BridgeName,
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": obj{
					"type":    "host-local",
					"ranges":  [][]obj{{{"subnet": subnet.String()}}},
					"routes":  []obj{{"dst": "0.0.0.0/0"}},
					"dataDir": ipamDir,
				},
			},
			{
				"type":         "portmap",
				"capabilities": obj{"portMappings": true},
				"snat":         true,
			},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// NewGoCNI loads the conflist (and the loopback network) into go-cni after
// checking that every plugin binary is there.
func NewGoCNI(pluginDirs []string, confList []byte) (CNI, error) {
	var missing []string
	for _, plugin := range requiredPlugins {
		if !pluginExists(pluginDirs, plugin) {
			missing = append(missing, plugin)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("cni plugins %s not found in %s (install containernetworking-plugins or use network mode host)",
			strings.Join(missing, ", "), strings.Join(pluginDirs, ":"))
	}
	c, err := gocni.New(
		gocni.WithPluginDir(pluginDirs),
		gocni.WithInterfacePrefix("eth"),
		gocni.WithMinNetworkCount(2),
	)
	if err != nil {
		return nil, fmt.Errorf("init go-cni: %w", err)
	}
	if err := c.Load(gocni.WithConfListBytes(confList), gocni.WithLoNetwork); err != nil {
		return nil, fmt.Errorf("load cni config: %w", err)
	}
	return c, nil
}

func pluginExists(dirs []string, name string) bool {
	for _, d := range dirs {
		if fi, err := os.Stat(filepath.Join(d, name)); err == nil && fi.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// IPTablesMasquerade is MasqueradeCleaner through the iptables commands.
type IPTablesMasquerade struct{}

var _ MasqueradeCleaner = IPTablesMasquerade{}

// RemoveMasquerade implements MasqueradeCleaner. It undoes what the bridge
// plugin's ipMasq made (containernetworking/plugins pkg/ip/ipmasq_linux.go):
// a rule in nat POSTROUTING jumping from the container's address to a
// per-container chain, and that chain. Missing rules are not an error.
func (IPTablesMasquerade) RemoveMasquerade(ctx context.Context, network, containerID string, ips []net.IP) error {
	chain := masqChainName(network, containerID)
	comment := masqComment(network, containerID)
	var errs []error
	for _, tool := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(tool); err != nil {
			continue
		}
		if run(ctx, tool, "-w", "-t", "nat", "-S", chain) != nil {
			continue // no chain, so no rule can jump to it
		}
		for _, ip := range ips {
			if (ip.To4() != nil) != (tool == "iptables") {
				continue
			}
			// AppendUnique means one rule; bound the loop all the same.
			for range 4 {
				if run(ctx, tool, "-w", "-t", "nat", "-D", "POSTROUTING",
					"-s", ip.String(), "-j", chain, "-m", "comment", "--comment", comment) != nil {
					break
				}
			}
		}
		if err := run(ctx, tool, "-w", "-t", "nat", "-F", chain); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := run(ctx, tool, "-w", "-t", "nat", "-X", chain); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove masquerade of %s: %w", containerID, err)
	}
	return nil
}

// masqChainName is the bridge plugin's chain name for a container
// (plugins pkg/utils FormatChainName): "CNI-" + hex sha512(name+id), 28 bytes.
func masqChainName(network, containerID string) string {
	sum := sha512.Sum512([]byte(network + containerID))
	return fmt.Sprintf("CNI-%x", sum)[:28]
}

// masqComment is the plugins' iptables comment (pkg/utils FormatComment).
func masqComment(network, containerID string) string {
	return fmt.Sprintf("name: %q id: %q", network, containerID)
}

// ipamLeases reads host-local's files in dir (one file per leased address,
// named by the address, holding the container ID on its first line) and
// returns the addresses by container ID.
func ipamLeases(dir string) (map[string][]net.IP, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ipam dir: %w", err)
	}
	leases := map[string][]net.IP{}
	for _, e := range entries {
		ip := net.ParseIP(e.Name())
		if ip == nil || !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // released meanwhile
		}
		id, _, _ := strings.Cut(string(data), "\n")
		id = strings.TrimSpace(id)
		if id != "" {
			leases[id] = append(leases[id], ip)
		}
	}
	return leases, nil
}
