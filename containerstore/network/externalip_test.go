package network_test

import (
	"errors"
	"net"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore/network"
)

const routeHeader = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"

var _ = Describe("DefaultExternalIP", func() {
	addrs := map[string][]net.Addr{
		"eth0":  {&net.IPNet{IP: net.ParseIP("fe80::1"), Mask: net.CIDRMask(64, 128)}, &net.IPNet{IP: net.ParseIP("192.0.2.7"), Mask: net.CIDRMask(24, 32)}},
		"wlan0": {&net.IPNet{IP: net.ParseIP("198.51.100.3"), Mask: net.CIDRMask(24, 32)}},
		"v6":    {&net.IPNet{IP: net.ParseIP("2001:db8::1"), Mask: net.CIDRMask(64, 128)}},
	}
	lookup := func(name string) ([]net.Addr, error) {
		a, ok := addrs[name]
		if !ok {
			return nil, errors.New("no such interface")
		}
		return a, nil
	}

	DescribeTable("picks the IPv4 address of the default-route interface",
		func(table string, want string) {
			Expect(network.ExternalIPFrom(strings.NewReader(routeHeader+table), lookup).String()).To(Equal(want))
		},
		Entry("one default route",
			"eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"+
				"eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", "192.0.2.7"),
		Entry("lowest metric wins",
			"eth0\t00000000\t010200C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"+
				"wlan0\t00000000\t01643364\t0003\t0\t0\t100\t00000000\t0\t0\t0\n", "198.51.100.3"),
		Entry("no default route", "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", "127.0.0.1"),
		Entry("interface gone", "gone0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n", "127.0.0.1"),
		Entry("interface without IPv4", "v6\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n", "127.0.0.1"),
		Entry("empty table", "", "127.0.0.1"),
	)

	It("answers on this machine", func() {
		Expect(network.DefaultExternalIP().To4()).NotTo(BeNil())
	})
})

var _ = Describe("ConfList", func() {
	It("configures bridge with host-local in our data dir; no portmap, no ipMasq (nftables does both), no tuning or loopback (done in-process)", func() {
		cfg := network.DefaultConfig()
		conf, err := network.ConfList(cfg, "/data/network/ipam")
		Expect(err).NotTo(HaveOccurred())
		Expect(string(conf)).To(MatchJSON(`{
		  "cniVersion": "1.0.0", "name": "cellagent",
		  "plugins": [
		    {"type": "bridge", "bridge": "cellagent0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
		     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.255.0.0/22"}]],
		              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/data/network/ipam"}}
		  ]}`))
	})
})
