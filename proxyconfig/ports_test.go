package proxyconfig_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/proxyconfig"
)

type m = proxyconfig.Mapping

var _ = Describe("AllocatePorts", func() {
	DescribeTable("maps app ports to proxy ports and picks the admin port",
		func(app []uint16, want []proxyconfig.Mapping, wantAdmin uint16) {
			got, admin, err := proxyconfig.AllocatePorts(app)
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal(want))
			Expect(admin).To(Equal(wantAdmin))
		},
		Entry("no ports: admin only", []uint16{}, []proxyconfig.Mapping{}, uint16(61001)),
		Entry("one port", []uint16{8080}, []m{{AppPort: 8080, ProxyPort: 61001}}, uint16(61002)),
		Entry("several ports, in request order", []uint16{9090, 8080, 2222},
			[]m{{AppPort: 9090, ProxyPort: 61001}, {AppPort: 8080, ProxyPort: 61002}, {AppPort: 2222, ProxyPort: 61003}}, uint16(61004)),
		Entry("skips an app port in the range", []uint16{61001, 8080},
			[]m{{AppPort: 61001, ProxyPort: 61002}, {AppPort: 8080, ProxyPort: 61003}}, uint16(61004)),
		Entry("skips an app port for the admin port", []uint16{8080, 61002},
			[]m{{AppPort: 8080, ProxyPort: 61001}, {AppPort: 61002, ProxyPort: 61003}}, uint16(61004)),
		Entry("skips 61443", portsFrom(8000, 443), mappingsFrom(8000, 443, 61443), uint16(61445)),
		Entry("skips 61443 as admin port", portsFrom(8000, 442), mappingsFrom(8000, 442, 0), uint16(61444)),
		Entry("app port 61443 gets a proxy port, 61443 is not handed out", []uint16{61443},
			[]m{{AppPort: 61443, ProxyPort: 61001}}, uint16(61002)),
		Entry("a duplicate app port gets one mapping", []uint16{8080, 8080}, []m{{AppPort: 8080, ProxyPort: 61001}}, uint16(61002)),
	)

	It("fails when the ports above 61001 run out", func() {
		_, _, err := proxyconfig.AllocatePorts(portsFrom(1, 4600))
		Expect(err).To(MatchError(proxyconfig.ErrNoFreePorts))
	})
})

var _ = Describe("ValidateAppPorts", func() {
	DescribeTable("accepts",
		func(ports []uint16) { Expect(proxyconfig.ValidateAppPorts(ports)).To(Succeed()) },
		Entry("no ports", []uint16{}),
		Entry("ordinary ports", []uint16{8080, 9090}),
		Entry("a port just above the range (1 port: 61001-61002)", []uint16{61003}),
		Entry("a port just below the range", []uint16{61000}),
		Entry("the top port", []uint16{65535}),
	)

	DescribeTable("rejects",
		func(ports []uint16, sentinel error, message string) {
			err := proxyconfig.ValidateAppPorts(ports)
			Expect(err).To(MatchError(sentinel))
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("61443", []uint16{8080, 61443}, proxyconfig.ErrReservedPort, "61443 is reserved"),
		Entry("the first proxy port", []uint16{61001}, proxyconfig.ErrReservedPort, "61001 is in the proxy range 61001-61002"),
		Entry("the admin port", []uint16{8080, 61003}, proxyconfig.ErrReservedPort, "61003 is in the proxy range 61001-61003"),
		Entry("port 0", []uint16{0}, proxyconfig.ErrInvalidPort, "invalid app port: 0"),
		Entry("a duplicate", []uint16{8080, 8080}, proxyconfig.ErrInvalidPort, "8080 listed twice"),
	)

	It("reports every problem at once", func() {
		err := proxyconfig.ValidateAppPorts([]uint16{0, 61443, 61001})
		Expect(err).To(MatchError(proxyconfig.ErrInvalidPort))
		Expect(err).To(MatchError(proxyconfig.ErrReservedPort))
		Expect(err.Error()).To(ContainSubstring("61001 is in the proxy range"))
	})

	It("makes AllocatePorts hand out exactly 61001..61000+n and admin 61001+n", func() {
		ports := []uint16{8080, 61010, 3000}
		Expect(proxyconfig.ValidateAppPorts(ports)).To(Succeed())
		got, admin, err := proxyconfig.AllocatePorts(ports)
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal([]m{{AppPort: 8080, ProxyPort: 61001}, {AppPort: 61010, ProxyPort: 61002}, {AppPort: 3000, ProxyPort: 61003}}))
		Expect(admin).To(Equal(uint16(61004)))
	})
})

func portsFrom(first uint16, n int) []uint16 {
	var ports []uint16
	for i := 0; i < n; i++ {
		ports = append(ports, first+uint16(i))
	}
	return ports
}

// mappingsFrom builds the expected mappings for portsFrom(first, n), with
// proxy ports counting up from 61001 and skipping `skip` (0: nothing).
func mappingsFrom(first uint16, n int, skip uint16) []proxyconfig.Mapping {
	var out []proxyconfig.Mapping
	proxy := proxyconfig.FirstProxyPort
	for i := 0; i < n; i++ {
		if proxy == skip {
			proxy++
		}
		out = append(out, m{AppPort: first + uint16(i), ProxyPort: proxy})
		proxy++
	}
	return out
}
