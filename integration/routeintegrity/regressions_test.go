// Regression specs for agent bugs found while writing this suite (both
// fixed in routeemitter): a gone instance's repeated unregisters removed the
// instance that reused its host ports, and "no responders" answers to
// router.greet were logged as errors every second.
package routeintegrity_test

import (
	"context"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
)

var _ = Describe("route emitter regressions", func() {
	ctx := context.Background()

	It("an old instance's repeated unregisters do not remove the new instance that reuses its ports for the same route", func() {
		agent := startAgent("ri", singleCell("48030-48031"), func(c *config.Config) {
			c.Network.PortQuarantine = 0
		})
		router := routerFor(agent)
		const host = "same.ri.example.com"
		a := runRoutable(agent, "ri-old", host)
		Eventually(func() []string { return sans(router.endpoints(host)) }, 10*time.Second).Should(Equal([]string{"ri-old"}))
		Expect(agent.Client.Delete(ctx, "ri-old")).To(Succeed())
		b := runRoutable(agent, "ri-new", host)
		Expect(tlsAddress(b)).To(Equal(tlsAddress(a)))
		Eventually(func() []string { return sans(router.endpoints(host)) }, 10*time.Second).Should(Equal([]string{"ri-new"}))
		// ri-old's tombstone repeats at +5s and +15s (same host:port key,
		// same uri) must not take ri-new out of the router.
		Consistently(func() []string { return sans(router.endpoints(host)) }, 8*time.Second, 200*time.Millisecond).
			Should(Equal([]string{"ri-new"}))
	})

	It("does not log errors for router.greet's no-responders replies when no router is listening", func() {
		agent := startAgent("ri", singleCell("48040-48041"), nil)
		time.Sleep(3 * time.Second) // three greet tries
		Expect(strings.Count(agent.LogText(), "bad-router-hello")).To(BeZero())
	})
})
