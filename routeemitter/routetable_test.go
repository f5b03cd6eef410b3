package routeemitter_test

import (
	"fmt"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/ginkgomon_v2"

	"github.com/cellagent/cellagent/routeemitter"
	"github.com/cellagent/cellagent/routeemitter/routetable"
)

var _ = Describe("RouteTable fed by the Emitter", func() {
	It("is fed by WatchRoutes from an Emitter over real NATS", func() {
		leakCheck()
		logger := lagertest.NewTestLogger("test")
		srv := startNATS(fmt.Sprintf("127.0.0.1:%d", freePort()))
		table := routetable.NewRouteTable()
		var (
			mu     sync.Mutex
			events []routetable.RouteEvent
		)
		sub, err := routetable.WatchRoutes(logger, srv.connect(), table, func(ev routetable.RouteEvent) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, ev)
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(sub.Unsubscribe)

		// A bad message (index as a number) is skipped, like Gorouter does.
		other := srv.connect()
		Expect(other.Publish(routetable.SubjectRegister, []byte(`{"host":"10.0.0.9","port":1,"uris":["x.example.com"],"private_instance_index":0}`))).To(Succeed())

		emitter, err := routeemitter.New(logger, routeemitter.Config{
			URLs: []string{srv.url()}, DataDir: GinkgoT().TempDir(), CellID: "cell-1", Zone: "z1",
		}, nil)
		Expect(err).NotTo(HaveOccurred())
		p := ifrit.Invoke(emitter)
		DeferCleanup(func() { ginkgomon_v2.Interrupt(p, 10*time.Second) })
		Eventually(emitter.ConnectionState).Should(Equal(routeemitter.StateConnected))
		Expect(emitter.Register(logger, endpoint("g1"))).To(Succeed())
		Expect(emitter.Register(logger, endpoint("g2"))).To(Succeed())
		Eventually(table.Snapshot).Should(HaveLen(2))
		Expect(table.Snapshot()[0]).To(And(
			HaveField("URI", "g1.example.com"),
			HaveField("Address", "10.0.0.5:40002"),
			HaveField("TLS", true),
			HaveField("AvailabilityZone", "z1"),
		))

		Expect(emitter.Unregister(logger, "g1")).To(Succeed())
		Eventually(table.Snapshot).Should(HaveLen(1))
		Expect(table.Snapshot()[0].URI).To(Equal("g2.example.com"))
		mu.Lock()
		defer mu.Unlock()
		// Re-emissions (e.g. on connect) may repeat registers, unchanged.
		var changes []string
		for _, ev := range events {
			if ev.Changed {
				changes = append(changes, fmt.Sprintf("%t %s", ev.Registered, ev.Message.PrivateInstanceID))
			}
		}
		Expect(changes).To(Equal([]string{"true g1", "true g2", "false g1"}))
	})
})
