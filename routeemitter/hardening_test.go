package routeemitter_test

import (
	"fmt"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/ginkgomon_v2"

	"github.com/cellagent/cellagent/routeemitter"
	"github.com/cellagent/cellagent/routeemitter/routetable"
)

var _ = Describe("router.start intervals", func() {
	var (
		client  *nats.Conn
		emitter *routeemitter.Emitter
		logger  *lagertest.TestLogger
	)
	BeforeEach(func() {
		leakCheck()
		logger = lagertest.NewTestLogger("test")
		srv := startNATS(fmt.Sprintf("127.0.0.1:%d", freePort()))
		client = srv.connect()
		rec := record(client)
		var err error
		emitter, err = routeemitter.New(logger, routeemitter.Config{
			URLs: []string{srv.url()}, DataDir: GinkgoT().TempDir(), CellID: "cell-1", Zone: "z1",
			ReconnectWait: 50 * time.Millisecond, Clock: fakeclock.NewFakeClock(time.Unix(1700000000, 0)),
		}, nil)
		Expect(err).NotTo(HaveOccurred())
		p := ifrit.Invoke(emitter)
		DeferCleanup(func() { ginkgomon_v2.Interrupt(p, 10*time.Second) })
		Eventually(emitter.ConnectionState).Should(Equal(routeemitter.StateConnected))
		// It greets once its router.start subscription exists.
		Eventually(rec.greeted).Should(BeNumerically(">", 0))
	})
	start := func(interval, prune int64) {
		body := fmt.Sprintf(`{"id":"router-x","hosts":["10.0.0.9"],"minimumRegisterIntervalInSeconds":%d,"pruneThresholdInSeconds":%d}`, interval, prune)
		Expect(client.Publish(routetable.SubjectStart, []byte(body))).To(Succeed())
		Expect(client.Flush()).To(Succeed())
	}

	It("applies an interval between 1s and the cap, below the prune threshold", func() {
		start(15, 120)
		Eventually(emitter.RegisterInterval).Should(Equal(15 * time.Second))
	})

	DescribeTable("keeps the current interval for one out of range",
		func(interval, prune int64) {
			start(15, 120)
			Eventually(emitter.RegisterInterval).Should(Equal(15 * time.Second))
			start(interval, prune)
			Eventually(logger.LogMessages).Should(ContainElement(HaveSuffix("router-hello-interval-refused")))
			Expect(emitter.RegisterInterval()).To(Equal(15 * time.Second))
		},
		Entry("an hour", int64(3600), int64(0)),
		Entry("one that overflows a Duration", int64(9223372037), int64(0)),
		Entry("at the prune threshold", int64(60), int64(60)),
		Entry("negative", int64(-5), int64(120)),
	)

	It("never takes an out-of-range interval (checked between the two hellos)", func() {
		start(3600, 0)
		Consistently(emitter.RegisterInterval).Should(Equal(routeemitter.DefaultRegisterInterval))
	})
})
