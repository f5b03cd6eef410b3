package network

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ctTestTuple is the payload of a CTA_TUPLE_ORIG or CTA_TUPLE_REPLY as the
// kernel dumps it: CTA_TUPLE_IP and CTA_TUPLE_PROTO, both nested.
func ctTestTuple(t *testing.T, src, dst string, sport, dport uint16) []byte {
	t.Helper()
	s, d := net.ParseIP(src), net.ParseIP(dst)
	srcType, dstType := uint16(ctaIPV6Src), uint16(ctaIPV6Dst)
	if s.To4() != nil {
		s, d, srcType, dstType = s.To4(), d.To4(), ctaIPV4Src, ctaIPV4Dst
	}
	ae := netlink.NewAttributeEncoder()
	ae.Nested(ctaTupleIP, func(nae *netlink.AttributeEncoder) error {
		nae.Bytes(srcType, s)
		nae.Bytes(dstType, d)
		return nil
	})
	ae.Nested(ctaTupleProto, func(nae *netlink.AttributeEncoder) error {
		nae.ByteOrder = binary.BigEndian
		nae.Uint8(ctaProtoNum, unix.IPPROTO_UDP)
		nae.Uint16(ctaProtoSrcPort, sport)
		nae.Uint16(ctaProtoDstPort, dport)
		return nil
	})
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ctTestEntry is a dumped entry's message data: nfgenmsg, both tuples
// (flagged nested, as the kernel sends them), a status, and a zone if set.
func ctTestEntry(t *testing.T, family uint8, orig, reply []byte, zone []byte) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.NLA_F_NESTED|ctaTupleOrig, orig)
	ae.Bytes(unix.NLA_F_NESTED|ctaTupleReply, reply)
	ae.ByteOrder = binary.BigEndian
	ae.Uint32(3, 0x8) // CTA_STATUS, skipped
	if zone != nil {
		ae.Bytes(ctaZone, zone)
	}
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append(nfgenmsg(family), b...)
}

func TestConntrackEntryMatch(t *testing.T) {
	const ip = "10.255.0.7"
	cases := []struct {
		name                   string
		oSrc, oDst, rSrc, rDst string
		want                   bool
	}{
		{"orig source (egress)", ip, "1.1.1.1", "1.1.1.1", "192.168.0.9", true},
		{"orig destination", "10.255.0.1", ip, ip, "10.255.0.1", true},
		{"reply source only (DNAT from a host port)", "192.168.0.5", "192.168.0.9", ip, "192.168.0.5", true},
		{"reply destination only", "1.1.1.1", "192.168.0.9", "192.168.0.9", ip, true},
		{"another address", "10.255.0.1", "10.255.0.8", "10.255.0.8", "10.255.0.1", false},
		{"a neighbour of the address", "10.255.0.70", "10.255.0.17", "10.255.0.17", "10.255.0.70", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := ctTestEntry(t, unix.AF_INET, ctTestTuple(t, c.oSrc, c.oDst, 40000, 8080), ctTestTuple(t, c.rSrc, c.rDst, 8080, 40000), nil)
			e, err := decodeCTEntry(data)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.has(net.ParseIP(ip).To4()); got != c.want {
				t.Fatalf("has(%s) = %v, want %v (addrs %v)", ip, got, c.want, e.addrs)
			}
		})
	}
}

func TestConntrackEntryMatchIPv6(t *testing.T) {
	data := ctTestEntry(t, unix.AF_INET6, ctTestTuple(t, "fd00::1", "fd00::7", 1, 2), ctTestTuple(t, "fd00::7", "fd00::1", 2, 1), nil)
	e, err := decodeCTEntry(data)
	if err != nil {
		t.Fatal(err)
	}
	if !e.has(net.ParseIP("fd00::7")) || e.has(net.ParseIP("fd00::8")) {
		t.Fatalf("addrs %v: want fd00::7 and not fd00::8", e.addrs)
	}
}

func TestConntrackDeleteMessage(t *testing.T) {
	orig := ctTestTuple(t, "10.255.0.1", "10.255.0.7", 40000, 8080)
	zone := []byte{0, 7}
	for _, z := range [][]byte{zone, nil} {
		e, err := decodeCTEntry(ctTestEntry(t, unix.AF_INET, orig, ctTestTuple(t, "10.255.0.7", "10.255.0.1", 8080, 40000), z))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := e.desc.String(), "proto=17 src=10.255.0.1 dst=10.255.0.7 sport=40000 dport=8080"; got != want {
			t.Errorf("desc %q, want %q", got, want)
		}
		data, err := encodeCTDelete(unix.AF_INET, e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data[:4], []byte{unix.AF_INET, unix.NFNETLINK_V0, 0, 0}) {
			t.Fatalf("nfgenmsg % x", data[:4])
		}
		attrs, err := netlink.UnmarshalAttributes(data[4:])
		if err != nil {
			t.Fatal(err)
		}
		var gotOrig, gotZone []byte
		for _, a := range attrs {
			switch a.Type {
			case unix.NLA_F_NESTED | ctaTupleOrig:
				gotOrig = a.Data
			case ctaZone:
				gotZone = a.Data
			default:
				t.Errorf("unexpected attribute %#x", a.Type)
			}
		}
		if !bytes.Equal(gotOrig, orig) {
			t.Errorf("CTA_TUPLE_ORIG % x, want the received % x", gotOrig, orig)
		}
		if !bytes.Equal(gotZone, z) {
			t.Errorf("CTA_ZONE % x, want % x", gotZone, z)
		}
	}
}

// A delete without a tuple is a flush of the whole table in the kernel.
func TestConntrackEntryWithoutOrigTuple(t *testing.T) {
	data := ctTestEntry(t, unix.AF_INET, nil, ctTestTuple(t, "10.255.0.7", "10.255.0.1", 1, 2), nil)
	if _, err := decodeCTEntry(data); err == nil {
		t.Fatal("decoded an entry without an original tuple")
	}
	if _, err := encodeCTDelete(unix.AF_INET, ctEntry{}); err == nil {
		t.Fatal("encoded a delete without a tuple")
	}
}

func TestConntrackForgetRejectsNonIP(t *testing.T) {
	if _, err := (NetlinkConntrack{}).Forget(net.IP{1, 2, 3}); err == nil {
		t.Fatal("Forget of a 3-byte address: no error")
	}
}
