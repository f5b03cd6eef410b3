package routeemitter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/lager/v3/lagertest"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/ginkgomon_v2"

	"github.com/cellagent/cellagent/routeemitter"
)

var _ = Describe("Presence", func() {
	var (
		logger    *lagertest.TestLogger
		fakeClock *fakeclock.FakeClock
		srv       *natsServer
		js        jetstream.JetStream
		cfg       routeemitter.Config
		calls     atomic.Int32
		presence  func() routeemitter.CellPresence
	)

	BeforeEach(func() {
		leakCheck()
		logger = lagertest.NewTestLogger("test")
		fakeClock = fakeclock.NewFakeClock(time.Unix(1700000000, 0))
		srv = startNATS(fmt.Sprintf("127.0.0.1:%d", freePort()))
		var err error
		js, err = jetstream.New(srv.connect())
		Expect(err).NotTo(HaveOccurred())
		cfg = routeemitter.Config{
			URLs:             []string{srv.url()},
			DataDir:          GinkgoT().TempDir(),
			CellID:           "cell-1",
			Zone:             "z1",
			APIAddress:       "10.0.0.5:1801",
			PresenceInterval: 5 * time.Second,
			Clock:            fakeClock,
		}
		calls.Store(0)
		presence = func() routeemitter.CellPresence {
			n := calls.Add(1)
			return routeemitter.CellPresence{
				Total:      routeemitter.Resources{MemoryMB: 23000, DiskMB: 100000, Containers: 250},
				Available:  routeemitter.Resources{MemoryMB: 22808 - int(n), DiskMB: 99744, Containers: 249},
				Containers: 1,
			}
		}
	})

	start := func() ifrit.Process {
		e, err := routeemitter.New(logger, cfg, presence)
		Expect(err).NotTo(HaveOccurred())
		p := ifrit.Invoke(e)
		DeferCleanup(func() { ginkgomon_v2.Interrupt(p, 10*time.Second) })
		return p
	}

	// get answers the cell's presence document, or the error of the lookup.
	get := func() (routeemitter.CellPresence, error) {
		var state routeemitter.CellPresence
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, routeemitter.PresenceBucket)
		if err != nil {
			return state, err
		}
		entry, err := kv.Get(ctx, "cell-1")
		if err != nil {
			return state, err
		}
		return state, json.Unmarshal(entry.Value(), &state)
	}

	It("publishes the cell state under the cell id, refreshes it, and deletes it on clean shutdown", func() {
		p := start()
		Eventually(get).Should(Equal(routeemitter.CellPresence{
			CellID:     "cell-1",
			Zone:       "z1",
			APIAddress: "10.0.0.5:1801",
			Total:      routeemitter.Resources{MemoryMB: 23000, DiskMB: 100000, Containers: 250},
			Available:  routeemitter.Resources{MemoryMB: 22807, DiskMB: 99744, Containers: 249},
			Containers: 1,
			UpdatedAt:  "2023-11-14T22:13:20.000Z",
		}))

		// A refresh asks the cell again (calls goes up, so the free memory
		// goes down); the clock moves at each poll for the reason given in
		// the PresenceFeed spec.
		Eventually(func() (int, error) {
			fakeClock.Increment(5 * time.Second)
			state, err := get()
			return state.Available.MemoryMB, err
		}).Should(BeNumerically("<=", 22806))

		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, routeemitter.PresenceBucket)
		Expect(err).NotTo(HaveOccurred())
		status, err := kv.Status(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(status.TTL()).To(Equal(15 * time.Second))

		ginkgomon_v2.Interrupt(p, 10*time.Second)
		_, err = get()
		Expect(err).To(MatchError(jetstream.ErrKeyNotFound))
	})

	It("publishes what the cell last put in its PresenceFeed", func() {
		feed := routeemitter.NewPresenceFeed()
		figures := func(free int) routeemitter.CellPresence {
			return routeemitter.CellPresence{Total: routeemitter.Resources{MemoryMB: 1000, DiskMB: 2000, Containers: 10},
				Available: routeemitter.Resources{MemoryMB: free, DiskMB: 2000, Containers: 10}}
		}
		feed.Publish(figures(900))
		presence = feed.Latest
		start()
		available := func() (int, error) {
			state, err := get()
			return state.Available.MemoryMB, err
		}
		Eventually(available).Should(Equal(900))
		feed.Publish(figures(800))
		feed.Publish(figures(700))
		// Each poll moves the clock by one interval: a publish that fails
		// (a JetStream put past its timeout on a loaded machine) is only
		// retried at the next tick, and one tick is all this spec needs.
		Eventually(func() (int, error) {
			fakeClock.Increment(5 * time.Second)
			return available()
		}).Should(Equal(700))
	})

	It("expires by the bucket TTL when the cell stops publishing without shutting down", func() {
		cfg.PresenceInterval = 500 * time.Millisecond
		cfg.PresenceTTL = time.Second
		start()
		Eventually(get).Should(HaveField("CellID", "cell-1"))
		// The fake clock does not move: no more publishes, as if the agent
		// hung or the machine vanished.
		Eventually(func() error { _, err := get(); return err }).Should(MatchError(jetstream.ErrKeyNotFound))
		Expect(calls.Load()).To(BeEquivalentTo(1))
	})

	It("uses an existing bucket", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: routeemitter.PresenceBucket, TTL: time.Minute})
		Expect(err).NotTo(HaveOccurred())
		start()
		Eventually(get).Should(HaveField("CellID", "cell-1"))
	})

	Describe("on a NATS server without JetStream (CF's usual NATS)", func() {
		var plain *nats.Conn

		BeforeEach(func() {
			// A bare nats-server in-process, JetStream off, as CF runs it.
			srv := natsserver.New(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
			Expect(srv).NotTo(BeNil())
			go srv.Start()
			DeferCleanup(srv.Shutdown)
			Expect(srv.ReadyForConnections(10 * time.Second)).To(BeTrue())
			Expect(srv.JetStreamEnabled()).To(BeFalse())
			cfg.URLs = []string{srv.ClientURL()}
			var err error
			plain, err = nats.Connect(srv.ClientURL())
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(plain.Close)
		})

		It("publishes presence on cellagent.presence.<cell id> without logging errors, and a gone message on shutdown", func() {
			msgs := make(chan *nats.Msg, 16)
			_, err := plain.ChanSubscribe("cellagent.presence.>", msgs)
			Expect(err).NotTo(HaveOccurred())
			Expect(plain.Flush()).To(Succeed())

			p := start()
			var m *nats.Msg
			Eventually(msgs, 10*time.Second).Should(Receive(&m))
			Expect(m.Subject).To(Equal(routeemitter.PresenceSubjectPrefix + "cell-1"))
			var state routeemitter.CellPresence
			Expect(json.Unmarshal(m.Data, &state)).To(Succeed())
			Expect(state).To(Equal(routeemitter.CellPresence{
				CellID: "cell-1", Zone: "z1", APIAddress: "10.0.0.5:1801",
				Total:      routeemitter.Resources{MemoryMB: 23000, DiskMB: 100000, Containers: 250},
				Available:  routeemitter.Resources{MemoryMB: 22807, DiskMB: 99744, Containers: 249},
				Containers: 1, UpdatedAt: "2023-11-14T22:13:20.000Z",
			}))

			for i := range 3 {
				fakeClock.Increment(5 * time.Second)
				Eventually(msgs, 10*time.Second).Should(Receive(&m), "refresh %d", i)
				Expect(json.Unmarshal(m.Data, &state)).To(Succeed())
				Expect(state.Gone).To(BeFalse())
			}

			ginkgomon_v2.Interrupt(p, 10*time.Second)
			Eventually(msgs, 10*time.Second).Should(Receive(&m))
			Expect(json.Unmarshal(m.Data, &state)).To(Succeed())
			Expect(state.Gone).To(BeTrue())
			Expect(state.CellID).To(Equal("cell-1"))

			var errs, switched int
			for _, l := range logger.Logs() {
				if l.LogLevel >= lager.ERROR {
					errs++
				}
				if strings.HasSuffix(l.Message, "no-jetstream-publishing-presence-on-subject") {
					switched++
				}
			}
			Expect(errs).To(BeZero(), "no error logged for a server without JetStream")
			Expect(switched).To(Equal(1), "the fallback is logged once")
		})
	})
})
