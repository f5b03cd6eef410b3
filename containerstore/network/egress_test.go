package network_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore/network"
	"github.com/cellagent/cellagent/executor/netrules"
)

var _ = Describe("DefaultEgress", func() {
	It("keeps the default rules away from private, link-local and loopback ranges", func() {
		out, err := netrules.ValidateEgressRules("d", network.DefaultEgress())
		Expect(err).NotTo(HaveOccurred())
		Expect(out[0].Destinations).NotTo(ContainElement(ContainSubstring("10.0.0.0")))
		for _, private := range []string{"10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254", "127.0.0.1"} {
			Expect(network.Covers(out[0].Destinations, private)).To(BeFalse(), private)
		}
		for _, public := range []string{"8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1"} {
			Expect(network.Covers(out[0].Destinations, public)).To(BeTrue(), public)
		}
	})
})
