package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cellagent/cellagent/executor/netrules"
)

// hostLocalIPAM hands out the subnet's addresses with host-local's files
// and rules, in-process: one file per leased address in dir, named by the
// address and holding "<id>\r\n<ifname>"; last_reserved_ip.0 holds the
// address handed out last, and the next allocation goes round after it
// (an address just freed is the last to be handed out again). The
// subnet's network, gateway (its first address) and broadcast addresses
// are never handed out. Files written by the host-local plugin (the
// "cni" plumbing, or an earlier agent) and by this are the same, so
// either reads the other's leases.
//
// The plugin took a file lock per call; here one agent is the only
// writer and a mutex serialises its callers.
type hostLocalIPAM struct {
	dir     string
	subnet  *net.IPNet
	gateway net.IP

	mu   sync.Mutex
	last net.IP            // the address handed out last; nil: not read yet
	byID map[string]net.IP // leases made or seen by this value, checked against the file before use
}

func newHostLocalIPAM(dir string, subnet *net.IPNet) *hostLocalIPAM {
	return &hostLocalIPAM{dir: dir, subnet: subnet, gateway: gateway(subnet), byID: map[string]net.IP{}}
}

const lastReservedFile = "last_reserved_ip.0"

// allocate leases the next free address after the last one handed out to
// id (on ifName) and answers it.
func (a *hostLocalIPAM) allocate(id, ifName string) (net.IP, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := os.MkdirAll(a.dir, 0o755); err != nil {
		return nil, fmt.Errorf("ipam dir: %w", err)
	}
	if a.last == nil {
		a.last = a.readLast()
	}
	first, last := a.firstIP(), a.lastIP()
	ip := a.last
	if ip == nil || !a.subnet.Contains(ip) {
		ip = prevIP(first) // so that the first tried is first
	}
	for range ipCount(first, last) {
		ip = nextIP(ip)
		if ipLess(last, ip) {
			ip = first
		}
		f, err := os.OpenFile(filepath.Join(a.dir, ip.String()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ipam lease %s: %w", ip, err)
		}
		_, werr := f.WriteString(id + "\r\n" + ifName)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			_ = os.Remove(f.Name())
			return nil, fmt.Errorf("ipam lease %s: %w", ip, werr)
		}
		a.last = ip
		a.byID[id] = ip
		// As the plugin does; a failure only moves where the next
		// search starts after a restart.
		_ = os.WriteFile(filepath.Join(a.dir, lastReservedFile), []byte(ip.String()), 0o644)
		return ip, nil
	}
	return nil, fmt.Errorf("ipam: no free address in %s (%d leased)", a.subnet, ipCount(first, last))
}

// release frees every address leased to id; none is not an error.
func (a *hostLocalIPAM) release(id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ip, ok := a.byID[id]; ok {
		delete(a.byID, id)
		name := filepath.Join(a.dir, ip.String())
		if leaseID(name) == id {
			if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("ipam release %s: %w", ip, err)
			}
			return nil
		}
		// Not ours any more (another agent value released and reused
		// it): look for id's leases as the plugin does.
	}
	leases, err := ipamLeases(a.dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, ip := range leases[id] {
		if err := os.Remove(filepath.Join(a.dir, ip.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("ipam release %s: %w", ip, err))
		}
	}
	return errors.Join(errs...)
}

// leaseID answers the id a lease file names ("" if it cannot be read).
func leaseID(name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		return ""
	}
	id, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(id)
}

func (a *hostLocalIPAM) readLast() net.IP {
	b, err := os.ReadFile(filepath.Join(a.dir, lastReservedFile))
	if err != nil {
		return nil
	}
	return net.ParseIP(strings.TrimSpace(string(b))).To4()
}

// firstIP is the first address handed out: the one after the gateway.
func (a *hostLocalIPAM) firstIP() net.IP { return nextIP(a.gateway) }

// lastIP is the one before the broadcast address.
func (a *hostLocalIPAM) lastIP() net.IP { return prevIP(broadcastOf(a.subnet)) }

func ipUint(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }

func nextIP(ip net.IP) net.IP { return netrules.IPv4(ipUint(ip) + 1) }
func prevIP(ip net.IP) net.IP { return netrules.IPv4(ipUint(ip) - 1) }
func ipLess(a, b net.IP) bool { return ipUint(a) < ipUint(b) }
func ipCount(first, last net.IP) int {
	return int(ipUint(last) - ipUint(first) + 1)
}
