package network_test

import (
	"errors"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore/network"
)

var _ = Describe("Config", func() {
	It("accepts the defaults", func() {
		Expect(network.DefaultConfig().Validate()).To(Succeed())
	})

	DescribeTable("Validate",
		func(mutate func(*network.Config), wantErr string) {
			cfg := network.DefaultConfig()
			mutate(&cfg)
			err := cfg.Validate()
			if wantErr == "" {
				Expect(err).NotTo(HaveOccurred())
				return
			}
			Expect(err).To(MatchError(ContainSubstring(wantErr)))
		},
		Entry("host mode", func(c *network.Config) { c.Mode = network.ModeHost }, ""),
		Entry("unknown mode", func(c *network.Config) { c.Mode = "overlay" }, `network mode "overlay": must be "bridge" or "host"`),
		Entry("subnet not a CIDR", func(c *network.Config) { c.Subnet = "10.255.0.0" }, `network subnet: "10.255.0.0": not a CIDR`),
		Entry("subnet IPv6", func(c *network.Config) { c.Subnet = "fd00::/64" }, "not IPv4"),
		Entry("subnet host bits", func(c *network.Config) { c.Subnet = "10.255.0.1/22" }, "host bits set (did you mean 10.255.0.0/22?)"),
		Entry("subnet too small", func(c *network.Config) { c.Subnet = "10.255.0.0/30" }, "too small"),
		Entry("range without dash", func(c *network.Config) { c.HostPortRange = "40000" }, `network host_port_range: "40000": want FIRST-LAST`),
		Entry("range reversed", func(c *network.Config) { c.HostPortRange = "50000-40000" }, "want 1 <= FIRST <= LAST <= 65535"),
		Entry("range from 0", func(c *network.Config) { c.HostPortRange = "0-10" }, "want 1 <= FIRST"),
		Entry("range too high", func(c *network.Config) { c.HostPortRange = "60000-70000" }, "numbers in 1-65535"),
		Entry("range not numbers", func(c *network.Config) { c.HostPortRange = "a-b" }, "numbers in 1-65535"),
		Entry("single port range", func(c *network.Config) { c.HostPortRange = "40000-40000" }, ""),
		Entry("external IP", func(c *network.Config) { c.ExternalIP = "10.0.0.300" }, `external_ip "10.0.0.300": not an IP address`),
		Entry("negative quarantine", func(c *network.Config) { c.PortQuarantine = -time.Second }, "must not be negative"),
		Entry("zero quarantine", func(c *network.Config) { c.PortQuarantine = 0 }, ""),
		Entry("relative data dir", func(c *network.Config) { c.DataDir = "data" }, "must be an absolute path"),
		Entry("network name with dash", func(c *network.Config) { c.NetworkName = "cell-agent" }, "network name"),
		Entry("bridge name too long", func(c *network.Config) { c.BridgeName = "cellagentbridge0" }, "longer than 15 bytes"),
		Entry("bridge name ignored in host mode", func(c *network.Config) { c.Mode = network.ModeHost; c.BridgeName = "" }, ""),
		Entry("no plugin dirs with the plugins", func(c *network.Config) { c.Plumbing = network.PlumbingCNI; c.PluginDirs = nil }, "plugin dirs"),
		Entry("no plugin dirs in-process", func(c *network.Config) { c.PluginDirs = nil }, ""),
		Entry("unknown plumbing", func(c *network.Config) { c.Plumbing = "ovs" }, `network plumbing "ovs": want "netlink" or "cni"`),
	)

	It("reports every problem at once", func() {
		cfg := network.DefaultConfig()
		cfg.Mode = "nat"
		cfg.Subnet = "bad"
		cfg.HostPortRange = "9-1"
		err := cfg.Validate()
		Expect(err).To(MatchError(ContainSubstring("network mode")))
		Expect(err).To(MatchError(ContainSubstring("network subnet")))
		Expect(err).To(MatchError(ContainSubstring("network host_port_range")))
	})

	DescribeTable("ParsePortRange",
		func(in string, first, last uint16, ok bool) {
			f, l, err := network.ParsePortRange(in)
			if !ok {
				Expect(err).To(HaveOccurred())
				return
			}
			Expect(err).NotTo(HaveOccurred())
			Expect([]uint16{f, l}).To(Equal([]uint16{first, last}))
		},
		Entry("default", "40000-59999", uint16(40000), uint16(59999), true),
		Entry("spaces", " 1 - 65535 ", uint16(1), uint16(65535), true),
		Entry("negative", "-1-5", uint16(0), uint16(0), false),
		Entry("empty", "", uint16(0), uint16(0), false),
	)

	DescribeTable("ValidateGUID",
		func(guid string, ok bool) {
			err := network.ValidateGUID(guid)
			if ok {
				Expect(err).NotTo(HaveOccurred())
			} else {
				Expect(errors.Is(err, network.ErrInvalidGUID)).To(BeTrue(), "%v", err)
			}
		},
		Entry("simple", "g1", true),
		Entry("dashes and underscores", "a_b-c-123", true),
		Entry("128 chars", string(make128('a')), true),
		Entry("129 chars", string(make128('a'))+"a", false),
		Entry("empty", "", false),
		Entry("leading dash", "-g", false),
		Entry("leading underscore", "_g", false),
		Entry("dot", "a.b", false),
		Entry("path traversal", "../etc", false),
		Entry("slash", "a/b", false),
		Entry("space", "a b", false),
		Entry("newline", "a\n", false),
	)
})

func make128(c byte) []byte {
	b := make([]byte, 128)
	for i := range b {
		b[i] = c
	}
	return b
}
