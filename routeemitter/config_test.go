package routeemitter_test

import (
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/routeemitter"
)

var _ = Describe("Config", func() {
	valid := func() routeemitter.Config {
		c := routeemitter.DefaultConfig()
		c.DataDir, c.CellID = "/var/lib/cellagent", "cell-1"
		return c
	}

	DescribeTable("Validate",
		func(mutate func(*routeemitter.Config), problems ...string) {
			c := valid()
			mutate(&c)
			err := c.Validate()
			if len(problems) == 0 {
				Expect(err).NotTo(HaveOccurred())
				return
			}
			for _, p := range problems {
				Expect(err).To(MatchError(ContainSubstring(p)))
			}
		},
		Entry("defaults", func(*routeemitter.Config) {}),
		Entry("external urls", func(c *routeemitter.Config) { c.URLs = []string{"nats://n1:4222"} }),
		Entry("every problem at once", func(c *routeemitter.Config) {
			c.DataDir, c.CellID, c.EmbeddedListen = "", "", "nohostport"
		}, "data dir is required", "cell id is required", "embedded listen"),
		Entry("cell id unusable as a key", func(c *routeemitter.Config) { c.CellID = "cell 1" }, "cell id"),
		Entry("negative duration", func(c *routeemitter.Config) { c.ReconnectWait = -time.Second }, "reconnect wait"),
		Entry("ttl not above interval", func(c *routeemitter.Config) {
			c.PresenceInterval, c.PresenceTTL = 5*time.Second, 5*time.Second
		}, "presence ttl"),
	)

	It("is checked by New", func() {
		_, err := routeemitter.New(lagertest.NewTestLogger("test"), routeemitter.Config{}, nil)
		Expect(err).To(MatchError(ContainSubstring("data dir is required")))
	})
})
