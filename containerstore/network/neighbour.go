package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"code.cloudfoundry.org/lager/v3"
	gocni "github.com/containerd/go-cni"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Neighbours pins the host's neighbour (ARP) entry of each container on
// the bridge. Without it the host resolves a container's address by a
// broadcast that the bridge floods to every port, so each resolution costs
// softirq work in every container's namespace (O(N) per probe, O(N^2) per
// health round); and the kernel's neighbour table, shared by all
// namespaces, passes gc_thresh2 (512) near 250 containers (each container
// holds an entry for its gateway too), after which forced garbage
// collection drops entries that the next health check resolves again.
// Permanent entries are never collected, never expire and need no
// resolution.
type Neighbours interface {
	// Pin makes ip -> mac on dev a permanent entry (replacing any).
	Pin(dev string, ip net.IP, mac net.HardwareAddr) error
	// Unpin removes ip's entry on dev; no entry is not an error.
	Unpin(dev string, ip net.IP) error
}

// NetlinkNeighbours programs entries with rtnetlink (no exec per start).
type NetlinkNeighbours struct{}

var _ Neighbours = NetlinkNeighbours{}

// Pin implements Neighbours.
func (NetlinkNeighbours) Pin(dev string, ip net.IP, mac net.HardwareAddr) error {
	msg, err := neighMessage(dev, ip, mac)
	if err != nil {
		return err
	}
	return linkRequest(unix.RTM_NEWNEIGH, netlink.Create|netlink.Replace, msg)
}

// Unpin implements Neighbours.
func (NetlinkNeighbours) Unpin(dev string, ip net.IP) error {
	msg, err := neighMessage(dev, ip, nil)
	if errors.Is(err, errNoDevice) {
		return nil // the bridge is gone, and its entries with it
	}
	if err != nil {
		return err
	}
	err = linkRequest(unix.RTM_DELNEIGH, 0, msg)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

var errNoDevice = errors.New("no such network interface")

// neighMessage encodes an ndmsg for ip on dev: permanent, with mac's
// lladdr when mac is set.
func neighMessage(dev string, ip net.IP, mac net.HardwareAddr) ([]byte, error) {
	ip4 := ip.To4()
	if ip4 == nil {
		return nil, fmt.Errorf("neighbour %v: not an IPv4 address", ip)
	}
	index, err := ifindex(dev)
	if err != nil {
		return nil, fmt.Errorf("neighbour %v on %s: %w: %w", ip, dev, errNoDevice, err)
	}
	return encodeNeigh(index, ip4, mac)
}

// ifindex asks the kernel for one interface's index (SIOCGIFINDEX).
// net.InterfaceByName dumps every link of the host to find one: with a
// veth per container that made each pin O(containers), and a restore of
// 500 containers O(n²) (8.2 s instead of ~3 s in scripts/bench).
func ifindex(dev string) (int, error) {
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		return 0, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, err
	}
	return int(ifr.Uint32()), nil
}

// encodeNeigh is struct ndmsg then NDA_DST and NDA_LLADDR.
func encodeNeigh(ifindex int, ip4 net.IP, mac net.HardwareAddr) ([]byte, error) {
	hdr := make([]byte, unix.SizeofNdMsg)
	hdr[0] = unix.AF_INET
	binary.NativeEndian.PutUint32(hdr[4:8], uint32(ifindex))
	binary.NativeEndian.PutUint16(hdr[8:10], unix.NUD_PERMANENT)
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.NDA_DST, ip4)
	if mac != nil {
		ae.Bytes(unix.NDA_LLADDR, mac)
	}
	attrs, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	return append(hdr, attrs...), nil
}

// macOf is the container interface's MAC in a CNI result ("" if none).
func macOf(res *gocni.Result) string {
	if res == nil || res.Interfaces[containerIfName] == nil {
		return ""
	}
	return res.Interfaces[containerIfName].Mac
}

// pinNeighbour pins ip to the container's MAC on the bridge and answers
// the MAC pinned ("" when it could not: resolution by ARP still works, so
// a failure costs only CPU and is logged, not fatal).
func (m *Manager) pinNeighbour(logger lager.Logger, macText string, ip net.IP) string {
	if m.neighbours == nil {
		return ""
	}
	mac, err := net.ParseMAC(macText)
	if err != nil {
		err = fmt.Errorf("container MAC %q from CNI: %w", macText, err)
	} else {
		err = m.neighbours.Pin(m.cfg.BridgeName, ip, mac)
	}
	if err != nil {
		logger.Error("failed-to-pin-neighbour", err)
		return ""
	}
	return mac.String()
}

// unpinNeighbour removes the pinned entry (a failure is logged: the next
// Setup that gets the address replaces the entry).
func (m *Manager) unpinNeighbour(logger lager.Logger, st containerState) {
	if m.neighbours == nil || st.MAC == "" || st.IPv4 == nil {
		return
	}
	if err := m.neighbours.Unpin(m.cfg.BridgeName, st.IPv4); err != nil {
		logger.Error("failed-to-unpin-neighbour", err)
	}
}

// repinNeighbour pins a restored container's entry again (kept by the
// kernel across an agent restart; lost if the bridge was recreated).
func (m *Manager) repinNeighbour(logger lager.Logger, st containerState) {
	if m.neighbours == nil || st.Mode != ModeBridge || st.IPv4 == nil {
		return
	}
	mac, err := net.ParseMAC(st.MAC)
	if err != nil {
		return // not pinned at set-up
	}
	if err := m.neighbours.Pin(m.cfg.BridgeName, st.IPv4, mac); err != nil {
		logger.Error("failed-to-pin-neighbour", err)
	}
}
