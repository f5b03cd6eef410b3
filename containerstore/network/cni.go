package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
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

// containerIfName is the container side of the veth; go-cni names it
// <prefix><index> and our conflist is loaded first.
const containerIfName = "eth0"

// requiredPlugins are the CNI plugin binaries bridge mode runs. The
// loopback and tuning plugins' work (lo up, IPv6 off) is done in-process
// (nsprep.go).
var requiredPlugins = []string{"bridge", "host-local"}

// ConfList returns the CNI network configuration list of bridge mode:
// bridge (gateway, hairpin) with host-local IPAM whose files live in
// ipamDir. Host ports and masquerading are not CNI's: portmap and ipMasq
// cost 36 iptables runs per container; NFTables does both with one
// transaction. IPv6 is turned off in the container's namespace right after
// ADD (prepareNetNS, what the tuning plugin did before): the filter is IPv4
// only, and where br_netfilter is on the bridge ports are not isolated, so
// an fe80:: address on eth0 would let any container reach another's ports
// directly.
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
				"ipMasq":      false,
				"hairpinMode": true,
				"ipam": obj{
					"type":    "host-local",
					"ranges":  [][]obj{{{"subnet": subnet.String()}}},
					"routes":  []obj{{"dst": "0.0.0.0/0"}},
					"dataDir": ipamDir,
				},
			},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// NewGoCNI loads the conflist into go-cni after checking that every plugin
// binary is there; its Setup also brings the namespace's loopback up and
// turns IPv6 off (prepareNetNS).
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
		gocni.WithMinNetworkCount(1),
	)
	if err != nil {
		return nil, fmt.Errorf("init go-cni: %w", err)
	}
	if err := c.Load(gocni.WithConfListBytes(confList)); err != nil {
		return nil, fmt.Errorf("load cni config: %w", err)
	}
	return preparedCNI{c}, nil
}

func pluginExists(dirs []string, name string) bool {
	for _, d := range dirs {
		if fi, err := os.Stat(filepath.Join(d, name)); err == nil && fi.Mode().IsRegular() {
			return true
		}
	}
	return false
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
