package network

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	gocni "github.com/containerd/go-cni"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/internal/netnsthread"
)

// Plumbing values (Config.Plumbing).
const (
	// PlumbingNetlink (the default) makes the veth, the address and the
	// routes in-process over rtnetlink, with host-local's lease files
	// (Plumber).
	PlumbingNetlink = "netlink"
	// PlumbingCNI runs the bridge and host-local CNI plugins through
	// go-cni (ConfList), as before Plumber.
	PlumbingCNI = "cni"
)

// Plumber is bridge mode's CNI done in-process: what the bridge plugin
// (isGateway, hairpinMode) with host-local IPAM did, with the same
// result, lease files and bridge, without exec'ing two plugin binaries
// per namespace (~20 ms of CPU per start on this kind of machine: in a
// fill of 500 the pool cannot keep up, so nearly every start ran them
// inline). Per Setup: one rtnetlink request makes the veth pair with its
// container end in the namespace, on the bridge and up; one visit of the
// namespace (the sysctls and loopback of prepareNetNS) adds the address,
// brings eth0 up and adds the default route.
//
// What it does not do that the plugin did: no gratuitous ARP from the
// new address (the host's entry is pinned, and a container's address is
// new to the other containers' caches or was last a namespace's that the
// pool kept), and no libcni cache file under /var/lib/cni (Remove
// deletes one an earlier agent left).
type Plumber struct {
	bridge  string
	subnet  *net.IPNet
	network string // CNI network name: names the libcni cache files
	ipam    *hostLocalIPAM

	mu         sync.Mutex
	bridgeDone bool // the bridge was seen with its address, and IPv4 forwarding is on
}

var _ CNI = (*Plumber)(nil)

// NewPlumber answers a Plumber for cfg's bridge and subnet, its leases in
// ipamDir (host-local's dataDir/<network>).
func NewPlumber(cfg Config, ipamDir string) (*Plumber, error) {
	subnet, err := parseSubnet(cfg.Subnet)
	if err != nil {
		return nil, err
	}
	return &Plumber{bridge: cfg.BridgeName, subnet: subnet, network: cfg.NetworkName, ipam: newHostLocalIPAM(ipamDir, subnet)}, nil
}

// Setup implements CNI: it leases an address to id and plumbs the
// namespace at path: eth0 with that address (MAC derived from it), its
// host end on the bridge, the default route through the gateway, and
// prepareNetNS's sysctls and loopback. On failure it undoes what it did.
func (p *Plumber) Setup(ctx context.Context, id, path string, _ ...gocni.NamespaceOpts) (_ *gocni.Result, retErr error) {
	brIndex, err := p.ensureBridge()
	if err != nil {
		return nil, err
	}
	ip, err := p.ipam.allocate(id, containerIfName)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			_ = p.ipam.release(id)
		}
	}()
	hostName, mac := hostVethName(ip), containerMAC(ip)
	if err := p.makeVeth(path, hostName, brIndex, mac); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			_ = deleteLinkByName(hostName)
		}
	}()
	// hairpinMode: the container reaches itself through the host's
	// port forwards (its own host port on the external IP).
	if err := os.WriteFile("/sys/class/net/"+hostName+"/brport/hairpin_mode", []byte("1"), 0o644); err != nil {
		return nil, fmt.Errorf("hairpin on %s: %w", hostName, err)
	}
	ones, _ := p.subnet.Mask.Size()
	gw := p.ipam.gateway
	if err := netnsthread.At(path, func() error {
		if err := inNetNS(); err != nil {
			return err
		}
		return configureEth0(ip, ones, broadcastOf(p.subnet), gw)
	}); err != nil {
		return nil, fmt.Errorf("configure %s in %s: %w", containerIfName, path, err)
	}
	return &gocni.Result{Interfaces: map[string]*gocni.Config{
		p.bridge:        {},
		hostName:        {},
		containerIfName: {IPConfigs: []*gocni.IPConfig{{IP: ip, Gateway: gw}}, Mac: mac.String(), Sandbox: path},
	}}, nil
}

// Remove implements CNI: eth0 goes (and its host end with it) when the
// namespace is still there (path not ""), then id's leases. What is
// already gone is not an error.
func (p *Plumber) Remove(ctx context.Context, id, path string, _ ...gocni.NamespaceOpts) error {
	var errs []error
	if path != "" {
		err := netnsthread.At(path, func() error { return deleteLinkByName(containerIfName) })
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete %s in %s: %w", containerIfName, path, err))
		}
	}
	if err := p.ipam.release(id); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		// What libcni cached for a namespace an earlier agent made
		// through the plugins.
		for _, name := range []string{p.network + "-" + id + "-" + containerIfName, "cni-loopback-" + id + "-lo"} {
			_ = os.Remove(filepath.Join(cniCacheDir, "results", name))
		}
	}
	return errors.Join(errs...)
}

// ensureBridge answers the bridge's index, making the bridge first if it
// is not there (up, with the gateway address, IPv4 forwarding on), as the
// bridge plugin's isGateway did at every ADD.
func (p *Plumber) ensureBridge() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	index, err := ifindex(p.bridge)
	if err == nil && p.bridgeDone {
		return index, nil
	}
	if errors.Is(err, unix.ENODEV) {
		if err := linkRequest(unix.RTM_NEWLINK, netlink.Create|netlink.Excl, bridgeMessage(p.bridge, containerMAC(p.ipam.gateway))); err != nil && !errors.Is(err, unix.EEXIST) {
			return 0, fmt.Errorf("make bridge %s: %w", p.bridge, err)
		}
		index, err = ifindex(p.bridge)
	}
	if err != nil {
		return 0, fmt.Errorf("bridge %s: %w", p.bridge, err)
	}
	if err := linkRequest(unix.RTM_NEWLINK, 0, upMessage(index)); err != nil {
		return 0, fmt.Errorf("bridge %s up: %w", p.bridge, err)
	}
	if err := pinBridgeMAC(p.bridge, index); err != nil {
		return 0, err
	}
	ones, _ := p.subnet.Mask.Size()
	err = linkRequest(unix.RTM_NEWADDR, netlink.Create|netlink.Excl, addrMessage(index, p.ipam.gateway, ones, broadcastOf(p.subnet)))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return 0, fmt.Errorf("gateway address on %s: %w", p.bridge, err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return 0, fmt.Errorf("ip_forward: %w", err)
	}
	p.bridgeDone = true
	return index, nil
}

// makeVeth makes the veth pair in one request: hostName on the bridge and
// up in the host's namespace, its peer eth0 (with mac) in the namespace
// at path. A link left under hostName is a failed Setup's of the same
// address (the name is the address's, and the lease is ours): it goes and
// the request is made again.
func (p *Plumber) makeVeth(path, hostName string, brIndex int, mac net.HardwareAddr) error {
	ns, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns: %w", err)
	}
	defer unix.Close(ns)
	msg, err := vethMessage(hostName, brIndex, ns, mac)
	if err != nil {
		return err
	}
	err = linkRequest(unix.RTM_NEWLINK, netlink.Create|netlink.Excl, msg)
	if errors.Is(err, unix.EEXIST) {
		if derr := deleteLinkByName(hostName); derr == nil {
			err = linkRequest(unix.RTM_NEWLINK, netlink.Create|netlink.Excl, msg)
		}
	}
	if err != nil {
		return fmt.Errorf("make veth %s: %w", hostName, err)
	}
	return nil
}

// hostVethName is the host end's name for the container address ip:
// "veth" and the address in hex (12 bytes, under IFNAMSIZ), so that
// an operator can tell whose a veth is.
func hostVethName(ip net.IP) string { return fmt.Sprintf("veth%08x", ipUint(ip)) }

// containerMAC is eth0's MAC for ip: locally administered, unicast,
// 0a:58 and the address (as OVN-Kubernetes does), so that the MAC
// pinned on the host follows from the address.
func containerMAC(ip net.IP) net.HardwareAddr {
	ip4 := ip.To4()
	return net.HardwareAddr{0x0a, 0x58, ip4[0], ip4[1], ip4[2], ip4[3]}
}

func broadcastOf(n *net.IPNet) net.IP {
	ip := n.IP.To4()
	b := make(net.IP, 4)
	for i := range b {
		b[i] = ip[i] | ^n.Mask[i]
	}
	return b
}

// configureEth0 runs on a thread inside the container's namespace: eth0
// gets ip/ones, goes up, and the default route goes through gw.
func configureEth0(ip net.IP, ones int, brd, gw net.IP) error {
	index, err := ifindex(containerIfName)
	if err != nil {
		return fmt.Errorf("%s: %w", containerIfName, err)
	}
	c, err := netlink.Dial(unix.NETLINK_ROUTE, nil) // this thread's namespace
	if err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	defer c.Close()
	if err := execute(c, unix.RTM_NEWADDR, netlink.Create|netlink.Excl, addrMessage(index, ip, ones, brd)); err != nil {
		return fmt.Errorf("address %s: %w", ip, err)
	}
	if err := execute(c, unix.RTM_NEWLINK, 0, upMessage(index)); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	if err := execute(c, unix.RTM_NEWROUTE, netlink.Create|netlink.Excl, defaultRouteMessage(index, gw)); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}

// deleteLinkByName deletes the link name of the calling thread's
// namespace; ENOENT when there is none.
func deleteLinkByName(name string) error {
	index, err := ifindex(name)
	if errors.Is(err, unix.ENODEV) {
		return unix.ENOENT
	}
	if err != nil {
		return err
	}
	err = linkRequest(unix.RTM_DELLINK, 0, ifinfomsg(unix.AF_UNSPEC, index, 0, 0))
	if errors.Is(err, unix.ENODEV) {
		return unix.ENOENT
	}
	return err
}

// linkRequest sends one rtnetlink request from the calling thread's
// namespace and waits for its acknowledgement.
func linkRequest(typ netlink.HeaderType, flags netlink.HeaderFlags, data []byte) error {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	defer c.Close()
	return execute(c, typ, flags, data)
}

func execute(c *netlink.Conn, typ netlink.HeaderType, flags netlink.HeaderFlags, data []byte) error {
	_, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: typ, Flags: netlink.Request | netlink.Acknowledge | flags},
		Data:   data,
	})
	var oerr *netlink.OpError
	if errors.As(err, &oerr) && oerr.Err != nil {
		return oerr.Err // the errno, for errors.Is(err, unix.EEXIST) and the like
	}
	return err
}

// ifinfomsg is struct ifinfomsg: family, type, index, flags, change.
func ifinfomsg(family uint8, index int, flags, change uint32) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = family
	binary.NativeEndian.PutUint32(b[4:8], uint32(index))
	binary.NativeEndian.PutUint32(b[8:12], flags)
	binary.NativeEndian.PutUint32(b[12:16], change)
	return b
}

// vethInfoPeer is VETH_INFO_PEER (linux/veth.h), which x/sys/unix lacks.
const vethInfoPeer = 1

// vethMessage asks for a veth pair: name, up, on the bridge brIndex; its
// peer eth0 with mac in the namespace nsFD.
func vethMessage(name string, brIndex, nsFD int, mac net.HardwareAddr) ([]byte, error) {
	peer := netlink.NewAttributeEncoder()
	peer.String(unix.IFLA_IFNAME, containerIfName)
	peer.Bytes(unix.IFLA_ADDRESS, mac)
	peer.Uint32(unix.IFLA_NET_NS_FD, uint32(nsFD))
	peerAttrs, err := peer.Encode()
	if err != nil {
		return nil, err
	}
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.IFLA_IFNAME, name)
	ae.Uint32(unix.IFLA_MASTER, uint32(brIndex))
	ae.Nested(unix.IFLA_LINKINFO, func(li *netlink.AttributeEncoder) error {
		li.String(unix.IFLA_INFO_KIND, "veth")
		li.Nested(unix.IFLA_INFO_DATA, func(d *netlink.AttributeEncoder) error {
			d.Bytes(vethInfoPeer, append(ifinfomsg(unix.AF_UNSPEC, 0, 0, 0), peerAttrs...))
			return nil
		})
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	return append(ifinfomsg(unix.AF_UNSPEC, 0, unix.IFF_UP, unix.IFF_UP), attrs...), nil
}

// pinBridgeMAC sets the bridge's MAC to the one it has, unless it was
// set already (made with one, or set since), as the bridge plugin does.
// A bridge whose MAC was never set takes the lowest MAC of its ports,
// which changes as veths come and go; a namespace that kept its
// gateway's old MAC (a pooled one given back, found in integration/network)
// then sends into nothing until its neighbour entry is probed again.
func pinBridgeMAC(name string, index int) error {
	sys := "/sys/class/net/" + name + "/"
	if t, err := os.ReadFile(sys + "addr_assign_type"); err == nil && strings.TrimSpace(string(t)) == netAddrSet {
		return nil
	}
	b, err := os.ReadFile(sys + "address")
	if err != nil {
		return fmt.Errorf("bridge %s MAC: %w", name, err)
	}
	mac, err := net.ParseMAC(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("bridge %s MAC: %w", name, err)
	}
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.IFLA_ADDRESS, mac)
	attrs, _ := ae.Encode()
	if err := linkRequest(unix.RTM_NEWLINK, 0, append(ifinfomsg(unix.AF_UNSPEC, index, 0, 0), attrs...)); err != nil {
		return fmt.Errorf("pin bridge %s MAC %s: %w", name, mac, err)
	}
	return nil
}

// netAddrSet is NET_ADDR_SET in /sys/class/net/<dev>/addr_assign_type.
const netAddrSet = "3"

// bridgeMessage asks for a bridge named name with MAC mac (which so
// stays: see pinBridgeMAC).
func bridgeMessage(name string, mac net.HardwareAddr) []byte {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.IFLA_IFNAME, name)
	ae.Bytes(unix.IFLA_ADDRESS, mac)
	ae.Nested(unix.IFLA_LINKINFO, func(li *netlink.AttributeEncoder) error {
		li.String(unix.IFLA_INFO_KIND, "bridge")
		return nil
	})
	attrs, _ := ae.Encode() // strings and a nest: cannot fail
	return append(ifinfomsg(unix.AF_UNSPEC, 0, unix.IFF_UP, unix.IFF_UP), attrs...)
}

// upMessage sets the link index up.
func upMessage(index int) []byte { return ifinfomsg(unix.AF_UNSPEC, index, unix.IFF_UP, unix.IFF_UP) }

// addrMessage is struct ifaddrmsg and the attributes of ip/ones on index.
func addrMessage(index int, ip net.IP, ones int, brd net.IP) []byte {
	b := make([]byte, unix.SizeofIfAddrmsg)
	b[0] = unix.AF_INET
	b[1] = uint8(ones)
	b[3] = unix.RT_SCOPE_UNIVERSE
	binary.NativeEndian.PutUint32(b[4:8], uint32(index))
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.IFA_LOCAL, ip.To4())
	ae.Bytes(unix.IFA_ADDRESS, ip.To4())
	ae.Bytes(unix.IFA_BROADCAST, brd.To4())
	attrs, _ := ae.Encode()
	return append(b, attrs...)
}

// defaultRouteMessage is struct rtmsg and the attributes of "default via
// gw dev index".
func defaultRouteMessage(index int, gw net.IP) []byte {
	b := make([]byte, unix.SizeofRtMsg)
	b[0] = unix.AF_INET
	b[4] = unix.RT_TABLE_MAIN
	b[5] = unix.RTPROT_BOOT
	b[6] = unix.RT_SCOPE_UNIVERSE
	b[7] = unix.RTN_UNICAST
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.RTA_GATEWAY, gw.To4())
	ae.Uint32(unix.RTA_OIF, uint32(index))
	attrs, _ := ae.Encode()
	return append(b, attrs...)
}
