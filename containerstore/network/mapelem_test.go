package network_test

import (
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/containerstore/network"
)

var _ = Describe("one map element through netlink", func() {
	// nested decodes the one attribute of type typ in b (flags masked).
	nested := func(b []byte, typ uint16) []byte {
		GinkgoHelper()
		attrs, err := netlink.UnmarshalAttributes(b)
		Expect(err).NotTo(HaveOccurred())
		for _, a := range attrs {
			if a.Type&^(netlink.Nested|netlink.NetByteOrder) == typ {
				Expect(a.Type&netlink.Nested).NotTo(BeZero(), "attribute %d is nested", typ)
				return a.Data
			}
		}
		Fail("no attribute of type " + string(rune('0'+typ)))
		return nil
	}

	It("asks for one element by its key: a request, not a dump", func() {
		m, err := network.GetSetElemRequest(unix.NFPROTO_IPV4, "cellagent_x", "egress", []byte{10, 0, 0, 7})
		Expect(err).NotTo(HaveOccurred())
		Expect(m.Header.Type).To(Equal(netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM)))
		Expect(m.Header.Flags).To(Equal(netlink.Request))
		Expect(m.Header.Flags & netlink.Dump).To(BeZero())
		Expect(m.Data[:4]).To(Equal([]byte{unix.NFPROTO_IPV4, unix.NFNETLINK_V0, 0, 0}))

		attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
		Expect(err).NotTo(HaveOccurred())
		Expect(attrs).To(HaveLen(3))
		attrs[0].Length, attrs[1].Length = 0, 0 // compared below: type and data
		Expect(attrs[0]).To(Equal(netlink.Attribute{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte("cellagent_x\x00")}))
		Expect(attrs[1]).To(Equal(netlink.Attribute{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte("egress\x00")}))
		elems := nested(m.Data[4:], unix.NFTA_SET_ELEM_LIST_ELEMENTS)
		key := nested(nested(elems, unix.NFTA_LIST_ELEM), unix.NFTA_SET_ELEM_KEY)
		value, err := netlink.UnmarshalAttributes(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(value).To(HaveLen(1))
		value[0].Length = 0
		Expect(value).To(Equal([]netlink.Attribute{{Type: unix.NFTA_DATA_VALUE, Data: []byte{10, 0, 0, 7}}}))
	})

	// answer is a NFT_MSG_NEWSETELEM payload laid out as the kernel
	// writes it (nf_tables_fill_setelem_info): its nests without
	// NLA_F_NESTED, the verdict code before the chain.
	answer := func(elems ...[]netlink.Attribute) []byte {
		GinkgoHelper()
		var list []netlink.Attribute
		for _, e := range elems {
			b, err := netlink.MarshalAttributes(e)
			Expect(err).NotTo(HaveOccurred())
			list = append(list, netlink.Attribute{Type: unix.NFTA_LIST_ELEM, Data: b})
		}
		lb, err := netlink.MarshalAttributes(list)
		Expect(err).NotTo(HaveOccurred())
		b, err := netlink.MarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte("cellagent_x\x00")},
			{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte("egress\x00")},
			{Type: unix.NFTA_SET_ELEM_LIST_ELEMENTS, Data: lb},
		})
		Expect(err).NotTo(HaveOccurred())
		return append([]byte{unix.NFPROTO_IPV4, unix.NFNETLINK_V0, 0, 1}, b...)
	}
	attrs := func(a ...netlink.Attribute) []byte {
		GinkgoHelper()
		b, err := netlink.MarshalAttributes(a)
		Expect(err).NotTo(HaveOccurred())
		return b
	}
	elem := func(chain, comment string) []netlink.Attribute {
		verdict := attrs(
			netlink.Attribute{Type: unix.NFTA_VERDICT_CODE, Data: []byte{0xff, 0xff, 0xff, 0xfc}}, // NFT_GOTO
			netlink.Attribute{Type: unix.NFTA_VERDICT_CHAIN, Data: []byte(chain + "\x00")})
		e := []netlink.Attribute{
			{Type: unix.NFTA_SET_ELEM_KEY, Data: attrs(netlink.Attribute{Type: unix.NFTA_DATA_VALUE, Data: []byte{10, 0, 0, 7}})},
			{Type: unix.NFTA_SET_ELEM_DATA, Data: attrs(netlink.Attribute{Type: unix.NFTA_DATA_VERDICT, Data: verdict})},
		}
		if comment != "" {
			e = append(e, netlink.Attribute{Type: unix.NFTA_SET_ELEM_USERDATA,
				Data: userdata.AppendString(nil, userdata.NFTNL_UDATA_SET_ELEM_COMMENT, comment)})
		}
		return e
	}

	It("reads the chain an element goes to and its comment", func() {
		chain, comment, err := network.DecodeSetElem(answer(elem("e_g1", "f1:abc")))
		Expect(err).NotTo(HaveOccurred())
		Expect(chain).To(Equal("e_g1"))
		Expect(comment).To(Equal("f1:abc"))
	})

	It("reads an element without a comment", func() {
		chain, comment, err := network.DecodeSetElem(answer(elem("i_g2", "")))
		Expect(err).NotTo(HaveOccurred())
		Expect(chain).To(Equal("i_g2"))
		Expect(comment).To(BeEmpty())
	})

	It("refuses an answer without an element, or cut short", func() {
		_, _, err := network.DecodeSetElem(answer())
		Expect(err).To(MatchError(ContainSubstring("no element")))
		b := answer(elem("e_g1", "f1:abc"))
		_, _, err = network.DecodeSetElem(b[:len(b)-5])
		Expect(err).To(HaveOccurred())
		_, _, err = network.DecodeSetElem(b[:3])
		Expect(err).To(MatchError(ContainSubstring("no nfgenmsg")))
	})
})
