package network_test

import (
	"context"
	"errors"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore/network"
	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("Manager filters", func() {
	var (
		logger *lagertest.TestLogger
		ctx    = context.Background()
		host   *fakeHost
		cfg    network.Config
	)
	mine := []executor.EgressRule{{Protocol: "tcp", Destinations: []string{"10.0.0.0/8"}, Ports: "443"}}
	defaults := []executor.EgressRule{{Protocol: "all", Destinations: []string{"192.0.2.0/24"}}}
	canonDefaults := []executor.EgressRule{{Protocol: "all", Destinations: []string{"192.0.2.0-192.0.2.255"}}}
	canonMine := []executor.EgressRule{{Protocol: "tcp", Destinations: []string{"10.0.0.0-10.255.255.255"}, Ports: "443"}}

	newManager := func() *network.Manager {
		m, err := network.NewWithDeps(logger, cfg, host.deps())
		Expect(err).NotTo(HaveOccurred())
		return m
	}
	lastFilter := func() (string, network.FilterSpec) {
		GinkgoHelper()
		n := host.hostPorts.FilterCallCount()
		Expect(n).To(BeNumerically(">", 0))
		_, guid, _, spec := host.hostPorts.FilterArgsForCall(n - 1)
		return guid, spec
	}

	BeforeEach(func() {
		logger = lagertest.NewTestLogger("test")
		host = newFakeHost()
		cfg = network.DefaultConfig()
		cfg.DataDir = GinkgoT().TempDir()
		cfg.HostPortRange = "40000-40009"
		cfg.ExternalIP = "192.0.2.10"
		cfg.Clock = fakeclock.NewFakeClock(time.Now())
		cfg.DefaultEgress = defaults
	})

	It("filters a container in Setup with the default rules first, and unfilters it in Teardown", func() {
		m := newManager()
		_, err := m.SetupFiltered(ctx, logger, "g1", []uint16{8080}, network.FilterSpec{LogGUID: "app", Egress: mine,
			Policies: []executor.NetworkPolicy{{SourceLogGUID: "other", Ports: "8080"}}})
		Expect(err).NotTo(HaveOccurred())
		guid, spec := lastFilter()
		Expect(guid).To(Equal("g1"))
		Expect(spec.Egress).To(Equal(append(append([]executor.EgressRule{}, canonDefaults...), canonMine...)))
		Expect(spec.Policies).To(Equal([]executor.NetworkPolicy{{SourceLogGUID: "other", Ports: "8080", Protocol: "tcp"}}))
		Expect(spec.LogGUID).To(Equal("app"))

		Expect(m.Teardown(ctx, logger, "g1")).To(Succeed())
		Expect(host.hostPorts.UnfilterCallCount()).To(Equal(1))
	})

	It("rolls back the whole setup when the filter cannot be installed", func() {
		host.hostPorts.FilterReturns(errors.New("nft says no"))
		m := newManager()
		_, err := m.Setup(ctx, logger, "g1", []uint16{8080})
		Expect(err).To(MatchError(ContainSubstring("nft says no")))
		Expect(host.has("cellagent-g1")).To(BeFalse())
		Expect(host.hostPorts.UnfilterCallCount()).To(Equal(1))
	})

	It("restores exactly the rules a container was set up with, even after the default changed", func() {
		m := newManager()
		_, err := m.SetupFiltered(ctx, logger, "g1", nil, network.FilterSpec{Egress: mine})
		Expect(err).NotTo(HaveOccurred())
		_, before := lastFilter()

		cfg.DefaultEgress = []executor.EgressRule{}
		m = newManager()
		_, err = m.Restore(logger, "g1")
		Expect(err).NotTo(HaveOccurred())
		_, after := lastFilter()
		Expect(after).To(Equal(before))
	})

	It("changes a running container's own rules, and a malformed rule changes nothing", func() {
		m := newManager()
		_, err := m.SetupFiltered(ctx, logger, "g1", nil, network.FilterSpec{Egress: mine})
		Expect(err).NotTo(HaveOccurred())
		calls := host.hostPorts.FilterCallCount()

		_, err = m.SetEgress(ctx, logger, "g1", []executor.EgressRule{{Protocol: "tcp", Destinations: []string{"10.0.0.0/33"}}})
		Expect(err).To(MatchError(executor.ErrInvalidRequest))
		Expect(host.hostPorts.FilterCallCount()).To(Equal(calls), "nothing applied")
		f, err := m.NetworkFilter(ctx, "g1")
		Expect(err).NotTo(HaveOccurred())
		Expect(f.EgressRules).To(Equal(canonMine))

		f, err = m.SetEgress(ctx, logger, "g1", nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(f.EgressRules).To(BeEmpty())
		Expect(f.DefaultEgress).To(Equal(canonDefaults))
		_, spec := lastFilter()
		Expect(spec.Egress).To(Equal(canonDefaults))

		_, err = m.SetEgress(ctx, logger, "nope", nil)
		Expect(err).To(MatchError(executor.ErrContainerNotFound))
	})

	It("refuses a bad default rule in the config", func() {
		cfg.DefaultEgress = []executor.EgressRule{{Protocol: "tcp", Destinations: []string{"nowhere"}}}
		_, err := network.NewWithDeps(logger, cfg, host.deps())
		Expect(err).To(MatchError(ContainSubstring(`network.egress.default[0].destinations[0]: "nowhere"`)))
	})
})
