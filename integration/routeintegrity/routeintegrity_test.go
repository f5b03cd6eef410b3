package routeintegrity_test

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
	"github.com/cellagent/cellagent/routeemitter/routetable"
)

// One network for the single-agent specs, which run one after the other.
func singleCell(ports string) cellNetwork {
	return cellNetwork{name: "cellagentri", subnet: "10.254.122.0/24", ports: ports}
}

// routerFor starts a testRouter on the agent's NATS, trusting its identity CA.
func routerFor(agent *testagent.Agent) *testRouter {
	nc, err := nats.Connect(agent.NATSURL())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(nc.Close)
	router, err := newTestRouter(nc, identityCA(agent))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(router.close)
	return router
}

func sans(eps []routetable.RegistryMessage) []string {
	var out []string
	for _, ep := range eps {
		out = append(out, ep.ServerCertDomainSAN)
	}
	return out
}

var _ = Describe("route integrity through a Gorouter-like router", func() {
	ctx := context.Background()

	It("answers every request from the instance the router chose", func() {
		agent := startAgent("ri", singleCell("48000-48009"), nil)
		router := routerFor(agent)
		const host = "app.ri.example.com"
		one := runRoutable(agent, "ri-one", host)
		two := runRoutable(agent, "ri-two", host)

		Eventually(func() []string { return sans(router.endpoints(host)) }, 10*time.Second).
			Should(ConsistOf("ri-one", "ri-two"))
		byGUID := map[string]string{}
		for _, ep := range router.endpoints(host) {
			Expect(ep.PrivateInstanceID).To(Equal(ep.ServerCertDomainSAN))
			byGUID[ep.PrivateInstanceID] = ep.Address()
		}
		Expect(byGUID).To(Equal(map[string]string{"ri-one": tlsAddress(one), "ri-two": tlsAddress(two)}))

		answers := map[string]int{}
		for range 10 {
			s, err := router.get(host)
			Expect(err).NotTo(HaveOccurred())
			Expect(answeredBy(s.Body)).To(Equal(s.Endpoint.PrivateInstanceID), "routed to %s, answered %q", s.Endpoint.Address(), s.Body)
			answers[answeredBy(s.Body)]++
		}
		Expect(answers).To(HaveLen(2), "both instances serve the route: %v", answers)
		Expect(router.prunedLog()).To(BeEmpty())
	})

	It("fails verification instead of reaching the instance that reused a lost endpoint's ports", func() {
		// Two host ports in all (app port + proxy port) and no quarantine:
		// the next instance must get exactly the ports of the one before.
		agent := startAgent("ri", singleCell("48010-48011"), func(c *config.Config) {
			c.Network.PortQuarantine = 0
		})
		router := routerFor(agent)
		a := runRoutable(agent, "ri-a", "a.ri.example.com")
		Eventually(func() []string { return sans(router.endpoints("a.ri.example.com")) }, 10*time.Second).
			Should(Equal([]string{"ri-a"}))
		s, err := router.get("a.ri.example.com")
		Expect(err).NotTo(HaveOccurred())
		Expect(answeredBy(s.Body)).To(Equal("ri-a"))

		By("A's unregister is lost on the way to the router")
		router.loseUnregisters()
		Expect(agent.Client.Delete(ctx, "ri-a")).To(Succeed())
		Eventually(router.ignoredUnregisters, 10*time.Second).Should(ContainElement(HaveField("PrivateInstanceID", "ri-a")),
			"the agent did send A's unregister")
		Expect(router.endpoints("a.ri.example.com")).To(HaveLen(1), "the router still holds A's endpoint")

		By("B gets A's host ports")
		b := runRoutable(agent, "ri-b", "b.ri.example.com")
		Expect(b.Ports[0].HostTLSProxyPort).To(Equal(a.Ports[0].HostTLSProxyPort))
		Expect(b.Ports[0].HostPort).To(Equal(a.Ports[0].HostPort))
		Expect(tlsAddress(b)).To(Equal(tlsAddress(a)))
		Eventually(func() []string { return sans(router.endpoints("b.ri.example.com")) }, 10*time.Second).
			Should(Equal([]string{"ri-b"}))
		stale := router.endpoints("a.ri.example.com")
		Expect(stale).To(HaveLen(1))
		Expect(stale[0].ServerCertDomainSAN).To(Equal("ri-a"))
		Expect(stale[0].Address()).To(Equal(tlsAddress(b)))
		// Without the identity check the stale endpoint would reach B.
		Expect(directGet(tlsAddress(b), "ri-b", identityCA(agent))).To(HavePrefix("hello from ri-b "))

		By("a request for A's route fails verification, prunes the endpoint and reaches nobody")
		s, err = router.get("a.ri.example.com")
		Expect(err).To(MatchError(ContainSubstring("certificate is valid for ri-b, not ri-a")))
		Expect(s.Body).To(BeEmpty())
		Expect(router.prunedLog()).To(ConsistOf(And(HavePrefix(tlsAddress(a)+" ri-a: "),
			ContainSubstring("certificate is valid for ri-b, not ri-a"))))
		Expect(router.endpoints("a.ri.example.com")).To(BeEmpty())

		By("B's own route still reaches B")
		s, err = router.get("b.ri.example.com")
		Expect(err).NotTo(HaveOccurred())
		Expect(answeredBy(s.Body)).To(Equal("ri-b"))
	})

	It("keeps a deleted instance's host ports in quarantine instead of handing them to the next instance", func() {
		// Four host ports: A and X take them all; once A is deleted, only
		// A's ports are free, so without quarantine B would get them.
		agent := startAgent("ri", singleCell("48020-48023"), func(c *config.Config) {
			c.Network.PortQuarantine = executor.Duration(30 * time.Second)
		})
		router := routerFor(agent)
		a := runRoutable(agent, "ri-qa", "qa.ri.example.com")
		runRoutable(agent, "ri-qx", "qx.ri.example.com")
		Eventually(func() []string { return sans(router.endpoints("qa.ri.example.com")) }, 10*time.Second).
			Should(Equal([]string{"ri-qa"}))
		router.loseUnregisters()
		Expect(agent.Client.Delete(ctx, "ri-qa")).To(Succeed())

		_, err := agent.Client.AllocateAndRun(ctx, "ri-qb", request("qb.ri.example.com"))
		Expect(err).To(MatchError(executor.ErrInsufficientResources))
		Expect(err).To(MatchError(ContainSubstring("2 in quarantine")))
		_, err = agent.Client.Get(ctx, "ri-qb")
		Expect(err).To(MatchError(executor.ErrContainerNotFound))
		cs, err := agent.Client.List(ctx)
		Expect(err).NotTo(HaveOccurred())
		for _, c := range cs {
			Expect(c.Ports[0].HostPort).NotTo(Equal(a.Ports[0].HostPort))
			Expect(c.Ports[0].HostTLSProxyPort).NotTo(Equal(a.Ports[0].HostTLSProxyPort))
		}

		By("the lost endpoint leads nowhere rather than to another instance")
		s, err := router.get("qa.ri.example.com")
		Expect(err).To(HaveOccurred())
		Expect(s.Body).To(BeEmpty())
	})
})
