package adapters_test

import (
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore/network"
	"github.com/cellagent/cellagent/containerstore/network/networkfakes"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/adapters"
)

var _ = Describe("Network", func() {
	manager := func(mode string) *network.Manager {
		cfg := network.DefaultConfig()
		cfg.Mode = mode
		cfg.DataDir = GinkgoT().TempDir()
		cfg.HostPortRange = "40000-40003"
		cfg.ExternalIP = "192.0.2.10"
		cfg.Clock = fakeclock.NewFakeClock(time.Now())
		m, err := network.NewWithDeps(lagertest.NewTestLogger("test"), cfg, network.Deps{
			Namespaces: &networkfakes.FakeNamespaces{}, CNI: &networkfakes.FakeCNI{}, HostPorts: &networkfakes.FakeHostPorts{}})
		Expect(err).NotTo(HaveOccurred())
		return m
	}

	It("refuses at once host ports that do not fit in the free range", func() {
		h := &adapters.Network{Manager: manager(network.ModeBridge)}
		Expect(h.CheckHostPorts(4)).To(Succeed(), "4 ports of 4")
		err := h.CheckHostPorts(6)
		Expect(err).To(MatchError(executor.ErrInsufficientResources))
		Expect(err).To(MatchError(ContainSubstring("need 6, 4 free in 40000-40003 (0 in use, 0 in quarantine)")))
	})

	It("needs no host port in host mode", func() {
		h := &adapters.Network{Manager: manager(network.ModeHost)}
		Expect(h.CheckHostPorts(10)).To(Succeed())
	})

	It("refuses a malformed egress rule as InvalidRequest", func() {
		h := &adapters.Network{Manager: manager(network.ModeBridge)}
		err := h.ValidateRequest(&executor.RunRequest{EgressRules: []executor.EgressRule{{Protocol: "sctp", Destinations: []string{"1.2.3.4"}}}})
		Expect(err).To(MatchError(executor.ErrInvalidRequest))
		Expect(err).To(MatchError(ContainSubstring("must be tcp, udp, icmp or all")))
	})
})
