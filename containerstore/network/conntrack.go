package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Conntrack forgets the host's connection-tracking entries of an address.
// A pooled namespace keeps its veth and address for the next tenant, whom
// the old tenant's entries (host port DNAT, egress SNAT, UDP) would send
// packets meant for the old one.
type Conntrack interface {
	// Forget deletes every entry whose original or reply tuple has ip as
	// its source or destination, and answers how many it deleted. A kernel
	// without connection tracking (nf_conntrack not loaded) is not an
	// error: 0, nil.
	Forget(ip net.IP) (int, error)
}

// NetlinkConntrack is Conntrack over ctnetlink in the calling thread's network namespace.
type NetlinkConntrack struct{}

var _ Conntrack = NetlinkConntrack{}

// ctnetlink message types and attributes (x/sys/unix has none), from the
// kernel's include/uapi/linux/netfilter/nfnetlink_conntrack.h: enum
// cntl_msg_types, ctattr_type, ctattr_tuple, ctattr_ip, ctattr_l4proto.
const (
	ipctnlMsgCtNew    = 0  // IPCTNL_MSG_CT_NEW: also the type of each dumped entry
	ipctnlMsgCtGet    = 1  // IPCTNL_MSG_CT_GET
	ipctnlMsgCtDelete = 2  // IPCTNL_MSG_CT_DELETE
	ctaTupleOrig      = 1  // CTA_TUPLE_ORIG (nested ctattr_tuple)
	ctaTupleReply     = 2  // CTA_TUPLE_REPLY (nested ctattr_tuple)
	ctaZone           = 18 // CTA_ZONE (u16, network order)
	ctaTupleIP        = 1  // CTA_TUPLE_IP (nested ctattr_ip)
	ctaTupleProto     = 2  // CTA_TUPLE_PROTO (nested ctattr_l4proto)
	ctaIPV4Src        = 1  // CTA_IP_V4_SRC
	ctaIPV4Dst        = 2  // CTA_IP_V4_DST
	ctaIPV6Src        = 3  // CTA_IP_V6_SRC
	ctaIPV6Dst        = 4  // CTA_IP_V6_DST
	ctaProtoNum       = 1  // CTA_PROTO_NUM (u8)
	ctaProtoSrcPort   = 2  // CTA_PROTO_SRC_PORT (u16, network order)
	ctaProtoDstPort   = 3  // CTA_PROTO_DST_PORT (u16, network order)
)

// ctEntry is what Forget needs of one dumped entry.
type ctEntry struct {
	orig  []byte    // CTA_TUPLE_ORIG's payload as the kernel sent it
	zone  []byte    // CTA_ZONE's payload; nil when the entry has none
	addrs []net.IP  // sources and destinations of both tuples
	desc  ctTupleID // the original tuple, for errors
}

// ctTupleID names a tuple as conntrack(8) does.
type ctTupleID struct {
	proto        uint8
	src, dst     net.IP
	sport, dport uint16
}

func (t ctTupleID) String() string {
	return fmt.Sprintf("proto=%d src=%v dst=%v sport=%d dport=%d", t.proto, t.src, t.dst, t.sport, t.dport)
}

// Forget implements Conntrack: one dump of the address's family, then a
// delete per matching entry (not while dumping: the dump walks the hash
// table that deletes change).
func (NetlinkConntrack) Forget(ip net.IP) (int, error) {
	family := uint8(unix.AF_INET6)
	if ip4 := ip.To4(); ip4 != nil {
		family, ip = unix.AF_INET, ip4
	} else if len(ip) != net.IPv6len {
		return 0, fmt.Errorf("conntrack: %v is not an IP address", ip)
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if errors.Is(err, unix.EPROTONOSUPPORT) && !conntrackLoaded() {
		return 0, nil // no nfnetlink, and nothing tracked
	}
	if err != nil {
		return 0, fmt.Errorf("conntrack: %w", err)
	}
	defer c.Close()
	msgs, err := ctExecute(c, ipctnlMsgCtGet, netlink.Dump, nfgenmsg(family))
	// Without nf_conntrack_netlink, nfnetlink answers EINVAL for the
	// missing subsystem (nfnetlink_rcv_msg); ENOENT is taken the same way.
	// That is "nothing to forget" only when nothing is tracked at all:
	// with conntrack loaded (the agent's own NAT loads it) entries exist
	// that cannot be seen, and the caller must not reuse the address.
	if (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT)) && !conntrackLoaded() {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("conntrack dump: %w", err)
	}
	var matches []ctEntry
	for _, m := range msgs {
		if m.Header.Type != ctMsgType(ipctnlMsgCtNew) {
			continue
		}
		e, err := decodeCTEntry(m.Data)
		if err != nil {
			return 0, fmt.Errorf("conntrack dump: %w", err)
		}
		if e.has(ip) {
			matches = append(matches, e)
		}
	}
	n := 0
	for _, e := range matches {
		data, err := encodeCTDelete(family, e)
		if err == nil {
			_, err = ctExecute(c, ipctnlMsgCtDelete, netlink.Acknowledge, data)
		}
		if errors.Is(err, unix.ENOENT) {
			continue // expired or deleted since the dump
		}
		if err != nil {
			return n, fmt.Errorf("conntrack delete %v: %w", e.desc, err)
		}
		n++
	}
	return n, nil
}

// conntrackLoaded says whether the calling thread's namespace tracks
// connections (nf_conntrack is loaded).
func conntrackLoaded() bool {
	_, err := os.Stat("/proc/sys/net/netfilter/nf_conntrack_count")
	return err == nil
}

func ctMsgType(msg uint16) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8 | msg)
}

func ctExecute(c *netlink.Conn, msg uint16, flags netlink.HeaderFlags, data []byte) ([]netlink.Message, error) {
	return c.Execute(netlink.Message{Header: netlink.Header{Type: ctMsgType(msg), Flags: netlink.Request | flags}, Data: data})
}

// nfgenmsg is struct nfgenmsg: family, version, resource id (0).
func nfgenmsg(family uint8) []byte {
	return []byte{family, unix.NFNETLINK_V0, 0, 0}
}

// decodeCTEntry reads one dumped entry (nfgenmsg then attributes).
func decodeCTEntry(data []byte) (ctEntry, error) {
	var e ctEntry
	if len(data) < 4 {
		return e, fmt.Errorf("entry of %d bytes", len(data))
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return e, err
	}
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleOrig, ctaTupleReply:
			orig := ad.Type() == ctaTupleOrig
			if orig {
				e.orig = ad.Bytes()
			}
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				t := decodeCTTuple(nad)
				if orig {
					e.desc = t
				}
				e.addrs = append(e.addrs, t.src, t.dst)
				return nil
			})
		case ctaZone:
			e.zone = ad.Bytes()
		}
	}
	if err := ad.Err(); err != nil {
		return e, err
	}
	if len(e.orig) == 0 {
		// A delete without a tuple flushes the whole table: never send one.
		return e, errors.New("entry without an original tuple")
	}
	return e, nil
}

// decodeCTTuple reads a tuple's addresses, protocol and ports.
func decodeCTTuple(ad *netlink.AttributeDecoder) ctTupleID {
	var t ctTupleID
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleIP:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					switch nad.Type() {
					case ctaIPV4Src, ctaIPV6Src:
						t.src = net.IP(nad.Bytes())
					case ctaIPV4Dst, ctaIPV6Dst:
						t.dst = net.IP(nad.Bytes())
					}
				}
				return nil
			})
		case ctaTupleProto:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				nad.ByteOrder = binary.BigEndian
				for nad.Next() {
					switch nad.Type() {
					case ctaProtoNum:
						t.proto = nad.Uint8()
					case ctaProtoSrcPort:
						t.sport = nad.Uint16()
					case ctaProtoDstPort:
						t.dport = nad.Uint16()
					}
				}
				return nil
			})
		}
	}
	return t
}

func (e ctEntry) has(ip net.IP) bool { return slices.ContainsFunc(e.addrs, ip.Equal) }

// encodeCTDelete is the IPCTNL_MSG_CT_DELETE body for e: the original
// tuple as received (with CTA_TUPLE_ZONE if it had one) and the zone.
func encodeCTDelete(family uint8, e ctEntry) ([]byte, error) {
	if len(e.orig) == 0 {
		return nil, errors.New("no original tuple")
	}
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.NLA_F_NESTED|ctaTupleOrig, e.orig)
	if e.zone != nil {
		ae.Bytes(ctaZone, e.zone)
	}
	attrs, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	return append(nfgenmsg(family), attrs...), nil
}
