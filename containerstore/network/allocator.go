package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
)

// ErrInsufficientPorts is wrapped by the error of an allocation that does not
// fit in the host port range; the message says how many ports are in use and
// in quarantine.
var ErrInsufficientPorts = errors.New("insufficient host ports")

// ErrPortInUse is wrapped when a port is claimed that another container holds.
var ErrPortInUse = errors.New("host port in use")

// PortAllocatorConfig configures a PortAllocator.
type PortAllocatorConfig struct {
	// First and Last bound the range, inclusive.
	First, Last uint16
	// Quarantine is how long a released port is held back; 0 disables it.
	Quarantine time.Duration
	// Clock drives the quarantine; nil means the real clock.
	Clock clock.Clock
	// Path of the JSON file the state is persisted to; "" keeps it in memory.
	Path string
}

// PortAllocator hands out host ports by owner (a container guid), round-robin
// through the range, and keeps released ports in quarantine.
type PortAllocator struct {
	first, last uint16
	quarantine  time.Duration
	clock       clock.Clock
	path        string

	mu       sync.Mutex           // guards the fields below and the file at path
	owners   map[uint16]string    // port -> owner, for ports in use
	released map[uint16]time.Time // port -> when it was released, while in quarantine
	next     uint16               // where the round-robin scan starts
}

// portsFile is the persisted form of a PortAllocator.
type portsFile struct {
	InUse      map[string][]uint16  `json:"in_use"`     // owner -> ports
	Quarantine map[uint16]time.Time `json:"quarantine"` // port -> released at
	Next       uint16               `json:"next"`
}

// NewPortAllocator makes an allocator and loads its file when there is one.
func NewPortAllocator(cfg PortAllocatorConfig) (*PortAllocator, error) {
	if cfg.First == 0 || cfg.First > cfg.Last {
		return nil, fmt.Errorf("port range %d-%d: want 1 <= first <= last", cfg.First, cfg.Last)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.NewClock()
	}
	a := &PortAllocator{
		first:      cfg.First,
		last:       cfg.Last,
		quarantine: cfg.Quarantine,
		clock:      cfg.Clock,
		path:       cfg.Path,
		owners:     map[uint16]string{},
		released:   map[uint16]time.Time{},
		next:       cfg.First,
	}
	if cfg.Path == "" {
		return a, nil
	}
	data, err := os.ReadFile(cfg.Path)
	if errors.Is(err, os.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read port allocations: %w", err)
	}
	var f portsFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse port allocations %s: %w", cfg.Path, err)
	}
	for owner, ports := range f.InUse {
		for _, p := range ports {
			a.owners[p] = owner
		}
	}
	for p, at := range f.Quarantine {
		if _, inUse := a.owners[p]; !inUse {
			a.released[p] = at
		}
	}
	if f.Next >= a.first && f.Next <= a.last {
		a.next = f.Next
	}
	return a, nil
}

// Allocate reserves n ports for owner, or none at all.
func (a *PortAllocator) Allocate(owner string, n int) ([]uint16, error) {
	if n <= 0 {
		return nil, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pruneLocked()

	inUse, quarantined := a.countLocked()
	size := int(a.last) - int(a.first) + 1
	if free := size - inUse - quarantined; free < n {
		return nil, fmt.Errorf("%w: no free host ports in %d-%d for %d more (%d in use, %d in quarantine)",
			ErrInsufficientPorts, a.first, a.last, n, inUse, quarantined)
	}

	oldNext := a.next
	ports := make([]uint16, 0, n)
	p := a.next
	for range size {
		if a.isFreeLocked(p) {
			ports = append(ports, p)
			a.owners[p] = owner
			if len(ports) == n {
				a.next = a.after(p)
				break
			}
		}
		p = a.after(p)
	}
	if err := a.saveLocked(); err != nil {
		for _, p := range ports {
			delete(a.owners, p)
		}
		a.next = oldNext
		return nil, err
	}
	return ports, nil
}

// MarkInUse records that owner holds ports (after a restart, or in host mode
// where the port is chosen by the app). Ports already held by owner are fine;
// a port held by another owner fails with ErrPortInUse and nothing changes.
func (a *PortAllocator) MarkInUse(owner string, ports []uint16) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var conflicts []error
	for _, p := range ports {
		if other, ok := a.owners[p]; ok && other != owner {
			conflicts = append(conflicts, fmt.Errorf("%w: %d is held by %s", ErrPortInUse, p, other))
		}
	}
	if len(conflicts) > 0 {
		return errors.Join(conflicts...)
	}
	changed := false
	for _, p := range ports {
		if a.owners[p] != owner {
			a.owners[p] = owner
			delete(a.released, p)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return a.saveLocked()
}

// Release puts owner's ports into quarantine and returns them.
func (a *PortAllocator) Release(owner string) ([]uint16, error) {
	return a.free(owner, a.quarantine > 0)
}

// Forget frees owner's ports at once, without quarantine: for rolling back
// an allocation whose ports were never published.
func (a *PortAllocator) Forget(owner string) error {
	_, err := a.free(owner, false)
	return err
}

func (a *PortAllocator) free(owner string, quarantine bool) ([]uint16, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clock.Now()
	var ports []uint16
	for p, o := range a.owners {
		if o != owner {
			continue
		}
		delete(a.owners, p)
		if quarantine {
			a.released[p] = now
		}
		ports = append(ports, p)
	}
	if len(ports) == 0 {
		return nil, nil
	}
	slices.Sort(ports)
	return ports, a.saveLocked()
}

// Owners lists the owners holding ports, sorted.
func (a *PortAllocator) Owners() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var owners []string
	for _, o := range a.owners {
		if !slices.Contains(owners, o) {
			owners = append(owners, o)
		}
	}
	slices.Sort(owners)
	return owners
}

// Stats tells how many ports of the range are in use and in quarantine.
func (a *PortAllocator) Stats() (inUse, quarantined int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pruneLocked()
	return a.countLocked()
}

func (a *PortAllocator) after(p uint16) uint16 {
	if p >= a.last {
		return a.first
	}
	return p + 1
}

func (a *PortAllocator) isFreeLocked(p uint16) bool {
	if _, ok := a.owners[p]; ok {
		return false
	}
	_, ok := a.released[p]
	return !ok
}

func (a *PortAllocator) inRange(p uint16) bool { return p >= a.first && p <= a.last }

func (a *PortAllocator) countLocked() (inUse, quarantined int) {
	for p := range a.owners {
		if a.inRange(p) {
			inUse++
		}
	}
	for p := range a.released {
		if a.inRange(p) {
			quarantined++
		}
	}
	return inUse, quarantined
}

// pruneLocked ends the quarantine of ports released long enough ago.
func (a *PortAllocator) pruneLocked() {
	now := a.clock.Now()
	for p, at := range a.released {
		if !now.Before(at.Add(a.quarantine)) {
			delete(a.released, p)
		}
	}
}

func (a *PortAllocator) saveLocked() error {
	if a.path == "" {
		return nil
	}
	a.pruneLocked()
	f := portsFile{InUse: map[string][]uint16{}, Quarantine: a.released, Next: a.next}
	for p, o := range a.owners {
		f.InUse[o] = append(f.InUse[o], p)
	}
	for _, ports := range f.InUse {
		slices.Sort(ports)
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode port allocations: %w", err)
	}
	if err := writeFileAtomic(a.path, data, 0o600); err != nil {
		return fmt.Errorf("save port allocations: %w", err)
	}
	return nil
}
