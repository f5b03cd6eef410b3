package network_test

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore/network"
)

var _ = Describe("what a returned namespace may still hold", func() {
	const tcpHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	// Ports in /proc/net/tcp are hex: 8AE8 = 35560 (ephemeral), 1F90 = 8080.
	const timeWaitEphemeral = "   0: 0A0A0002:8AE8 0A0A0001:1F90 06 00000000:00000000 03:00000F2A 00000000     0        0 0 3 0000000000000000\n"
	const timeWaitOnListenPort = "   1: 0A0A0002:1F90 0A0A0001:8AE8 06 00000000:00000000 03:00000F2A 00000000     0        0 0 3 0000000000000000\n"
	const listening = "   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0\n"
	const finWait2 = "   3: 0A0A0002:8AE9 0A0A0001:1F90 05 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000\n"
	left := func(table string, tcp bool) string {
		GinkgoHelper()
		s, err := network.LeftSocket(strings.NewReader(table), tcp, 32768, 60999)
		Expect(err).NotTo(HaveOccurred())
		return s
	}

	It("allows nothing, and TCP TIME_WAIT on an ephemeral port", func() {
		Expect(left(tcpHeader, true)).To(BeEmpty())
		Expect(left(tcpHeader+timeWaitEphemeral, true)).To(BeEmpty())
	})

	It("names any other socket", func() {
		Expect(left(tcpHeader+timeWaitEphemeral+timeWaitOnListenPort, true)).To(Equal("0A0A0002:1F90 state 06"),
			"a TIME_WAIT on a port the next container may listen on")
		Expect(left(tcpHeader+listening, true)).To(Equal("00000000:1F90 state 0A"))
		Expect(left(tcpHeader+finWait2, true)).To(Equal("0A0A0002:8AE9 state 05"))
		Expect(left(tcpHeader+timeWaitEphemeral, false)).To(Equal("0A0A0002:8AE8 state 06"), "state 06 means TIME_WAIT only in a TCP table")
	})
})
