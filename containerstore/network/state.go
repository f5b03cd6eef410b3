package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/atomicfile"
)

// containerState is what is persisted per container in
// <data_dir>/network/containers/<guid>.json. It is written before anything
// is made on the host, so that a crash leaves enough to clean up.
type containerState struct {
	GUID       string        `json:"guid"`
	Mode       string        `json:"mode"`
	NetNSName  string        `json:"netns_name,omitempty"`
	NetNSPath  string        `json:"netns_path,omitempty"`
	IPv4       net.IP        `json:"ipv4,omitempty"`
	IPv6       net.IP        `json:"ipv6,omitempty"`
	ExternalIP net.IP        `json:"external_ip"`
	Ports      []PortMapping `json:"ports"`
	// PoolSlot is the pooled namespace this container claimed (pool.go):
	// its CNI container ID, and the netns's name until the claim renamed
	// it. Empty for a namespace made for the container itself.
	PoolSlot string `json:"pool_slot,omitempty"`
	// Complete is false while Setup is still making things.
	Complete bool `json:"complete"`
	// DefaultEgress are the cell's rules when the container was set up
	// (a config change does not alter running containers); Filter holds
	// its own. Filter is nil in states written before filtering.
	DefaultEgress []executor.EgressRule `json:"default_egress,omitempty"`
	Filter        *FilterSpec           `json:"filter,omitempty"`
	// MAC is the container interface's, pinned in the host's neighbour
	// table on the bridge (empty: not pinned).
	MAC string `json:"mac,omitempty"`
}

// effectiveFilter is what the table holds for the container: the default
// rules, then its own.
func (s containerState) effectiveFilter() FilterSpec {
	var f FilterSpec
	if s.Filter != nil {
		f = *s.Filter
	}
	f.Egress = append(append([]executor.EgressRule{}, s.DefaultEgress...), f.Egress...)
	return f
}

func (s containerState) result() Result {
	return Result{
		NetNSPath:  s.NetNSPath,
		IPv4:       compactIP(s.IPv4),
		IPv6:       s.IPv6,
		ExternalIP: compactIP(s.ExternalIP),
		Ports:      append([]PortMapping(nil), s.Ports...),
	}
}

// cniID is the container ID the namespace's CNI ADD was made with.
func (s containerState) cniID() string {
	if s.PoolSlot != "" {
		return s.PoolSlot
	}
	return s.GUID
}

func (s containerState) hostPorts() []uint16 {
	ports := make([]uint16, 0, len(s.Ports))
	for _, p := range s.Ports {
		ports = append(ports, p.HostPort)
	}
	return ports
}

// stateStore keeps one JSON file per container in dir.
type stateStore struct {
	dir string
}

func (s stateStore) path(guid string) string { return filepath.Join(s.dir, guid+".json") }

func (s stateStore) save(st containerState) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode network state of %s: %w", st.GUID, err)
	}
	if err := writeFileAtomic(s.path(st.GUID), data, 0o600); err != nil {
		return fmt.Errorf("save network state of %s: %w", st.GUID, err)
	}
	return nil
}

// load returns the state of guid; ok is false when there is none.
func (s stateStore) load(guid string) (st containerState, ok bool, err error) {
	data, err := os.ReadFile(s.path(guid))
	if errors.Is(err, os.ErrNotExist) {
		return containerState{}, false, nil
	}
	if err != nil {
		return containerState{}, false, fmt.Errorf("read network state of %s: %w", guid, err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return containerState{}, false, fmt.Errorf("parse network state %s: %w", s.path(guid), err)
	}
	if st.GUID != guid {
		return containerState{}, false, fmt.Errorf("network state %s names guid %q", s.path(guid), st.GUID)
	}
	return st, true, nil
}

func (s stateStore) remove(guid string) error {
	if err := os.Remove(s.path(guid)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove network state of %s: %w", guid, err)
	}
	return nil
}

// guids lists the containers that have a state file.
func (s stateStore) guids() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list network states: %w", err)
	}
	var guids []string
	for _, e := range entries {
		guid, ok := strings.CutSuffix(e.Name(), ".json")
		if ok && ValidateGUID(guid) == nil {
			guids = append(guids, guid)
		}
	}
	return guids, nil
}

// writeFileAtomic replaces path so a reader (or a restart) never sees half
// a file; the data is synced before the rename (atomicfile.SyncFile), as
// adoption after a machine crash reads it.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, perm, atomicfile.SyncFile)
}

// compactIP gives IPv4 addresses their 4-byte form, which JSON decoding loses.
func compactIP(ip net.IP) net.IP {
	if ip4 := ip.To4(); ip4 != nil {
		return ip4
	}
	return ip
}
