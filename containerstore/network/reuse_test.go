package network_test

import (
	"net"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore/network"
)

var _ = Describe("what a returned namespace may still hold", func() {
	const tcpHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	// /proc/net/tcp: addresses are little-endian hex words, ports hex:
	// 0100007F = 127.0.0.1, 0200FE0A = 10.254.0.2 (the namespace's own),
	// 08080808 = 8.8.8.8; 8AE8 = 35560 (ephemeral), 1F90 = 8080.
	const (
		timeWaitToApp     = "   0: 0100007F:8AE8 0100007F:1F90 06 00000000:00000000 03:00000F2A 00000000     0        0 0 3 0000000000000000\n"
		timeWaitToOwnIP   = "   1: 0200FE0A:8AE9 0200FE0A:1F90 06 00000000:00000000 03:00000F2A 00000000     0        0 0 3 0000000000000000\n"
		timeWaitOnListen  = "   2: 0100007F:1F90 0100007F:8AE8 06 00000000:00000000 03:00000F2A 00000000     0        0 0 3 0000000000000000\n"
		timeWaitToOutside = "   3: 0200FE0A:8AEA 08080808:01BB 06 00000000:00000000 03:00000F2A 00000000     0        0 0 3 0000000000000000\n"
		listening         = "   4: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0\n"
		finWait2          = "   5: 0100007F:8AEB 0100007F:1F90 05 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000\n"
		// tcp6: ::ffff:10.254.0.2 to ::ffff:127.0.0.1, TIME_WAIT.
		timeWait6Mapped = "   0: 0000000000000000FFFF00000200FE0A:8AEC 0000000000000000FFFF00000100007F:1F90 06 00000000:00000000 03:00000F2A 00000000     0        0 0 3 0000000000000000\n"
	)
	own := func(ip net.IP) bool { return ip.IsLoopback() || ip.Equal(net.IPv4(10, 254, 0, 2)) }
	// left answers the socket named, and "(waits)" after it when only
	// TIME_WAIT ones are left that the kernel ends by itself.
	left := func(table string, tcp bool) string {
		GinkgoHelper()
		s, waiting, err := network.LeftSocket(strings.NewReader(table), tcp, 32768, 60999, own)
		Expect(err).NotTo(HaveOccurred())
		if waiting {
			s += " (waits)"
		}
		return s
	}

	It("allows nothing, and TCP TIME_WAIT on an ephemeral port between the namespace's own addresses", func() {
		Expect(left(tcpHeader, true)).To(BeEmpty())
		Expect(left(tcpHeader+timeWaitToApp+timeWaitToOwnIP, true)).To(BeEmpty())
		Expect(left(tcpHeader+timeWait6Mapped, true)).To(BeEmpty())
	})

	It("names any other socket, and a TIME_WAIT one as waiting when nothing but TIME_WAITs is left", func() {
		Expect(left(tcpHeader+timeWaitToApp+timeWaitOnListen, true)).To(Equal("0100007F:1F90 state 06 (waits)"),
			"a TIME_WAIT on a port the next container may listen on")
		Expect(left(tcpHeader+timeWaitToOutside, true)).To(Equal("0200FE0A:8AEA state 06 (waits)"),
			"it would tell the next container whom the last one talked to")
		Expect(left(tcpHeader+timeWaitOnListen+listening, true)).To(Equal("00000000:1F90 state 0A"),
			"a socket that does not end by itself wins over a TIME_WAIT before it")
		Expect(left(tcpHeader+listening, true)).To(Equal("00000000:1F90 state 0A"))
		Expect(left(tcpHeader+finWait2, true)).To(Equal("0100007F:8AEB state 05"))
		Expect(left(tcpHeader+timeWaitToApp, false)).To(Equal("0100007F:8AE8 state 06"), "state 06 means TIME_WAIT only in a TCP table")
	})
})
