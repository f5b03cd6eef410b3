package routeemitter_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
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

var _ = Describe("Emitter", func() {
	var (
		logger    *lagertest.TestLogger
		fakeClock *fakeclock.FakeClock
		srv       *natsServer
		client    *nats.Conn
		rec       *recorder
		cfg       routeemitter.Config
		emitter   *routeemitter.Emitter
	)

	// fakeRouter answers router.greet like Gorouter, with interval seconds.
	fakeRouter := func(interval int) *atomic.Int32 {
		greets := &atomic.Int32{}
		_, err := client.Subscribe(routetable.SubjectGreet, func(m *nats.Msg) {
			greets.Add(1)
			if interval > 0 {
				body := fmt.Sprintf(`{"id":"router-1","hosts":["10.0.0.1"],"minimumRegisterIntervalInSeconds":%d,"pruneThresholdInSeconds":120}`, interval)
				_ = m.Respond([]byte(body))
			}
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(client.Flush()).To(Succeed())
		return greets
	}

	routerStart := func(interval int) {
		body := fmt.Sprintf(`{"id":"router-2","hosts":["10.0.0.2"],"minimumRegisterIntervalInSeconds":%d,"pruneThresholdInSeconds":120}`, interval)
		Expect(client.Publish(routetable.SubjectStart, []byte(body))).To(Succeed())
		Expect(client.Flush()).To(Succeed())
	}

	newEmitter := func() *routeemitter.Emitter {
		e, err := routeemitter.New(logger, cfg, nil)
		Expect(err).NotTo(HaveOccurred())
		return e
	}

	run := func(e *routeemitter.Emitter) ifrit.Process {
		greetsBefore := rec.greeted()
		p := ifrit.Invoke(e)
		DeferCleanup(func() { ginkgomon_v2.Interrupt(p, 10*time.Second) })
		Eventually(e.ConnectionState).Should(Equal(routeemitter.StateConnected))
		// The loop greets when it handles the connect: from then on a
		// Register is sent once, not again by the connect's re-emission.
		Eventually(rec.greeted).Should(BeNumerically(">", greetsBefore))
		return p
	}

	BeforeEach(func() {
		leakCheck()
		logger = lagertest.NewTestLogger("test")
		fakeClock = fakeclock.NewFakeClock(time.Unix(1700000000, 0))
		srv = startNATS(fmt.Sprintf("127.0.0.1:%d", freePort()))
		client = srv.connect()
		rec = record(client)
		cfg = routeemitter.Config{
			URLs:          []string{srv.url()},
			DataDir:       GinkgoT().TempDir(),
			CellID:        "cell-1",
			Zone:          "z1",
			ReconnectWait: 50 * time.Millisecond,
			Clock:         fakeClock,
		}
	})

	Describe("greet and start", func() {
		It("greets until answered and re-emits on the router's interval", func() {
			greets := fakeRouter(7)
			emitter = newEmitter()
			run(emitter)
			Eventually(emitter.RegisterInterval).Should(Equal(7 * time.Second))
			Expect(greets.Load()).To(BeEquivalentTo(1))

			Expect(emitter.Register(logger, endpoint("g1"))).To(Succeed())
			Eventually(rec.registers).Should(Equal(1))

			fakeClock.Increment(6 * time.Second)
			Consistently(rec.registers).Should(Equal(1))
			fakeClock.Increment(1 * time.Second)
			Eventually(rec.registers).Should(Equal(2))
			Consistently(rec.registers).Should(Equal(2))
			fakeClock.Increment(7 * time.Second)
			Eventually(rec.registers).Should(Equal(3))

			// Answered: no more greets however long we wait.
			fakeClock.Increment(5 * time.Second)
			Consistently(greets.Load).Should(BeEquivalentTo(1))
		})

		It("retries router.greet every second, at most 30 times, keeping the default interval", func() {
			greets := fakeRouter(0) // a router that never answers
			emitter = newEmitter()
			run(emitter)
			Eventually(greets.Load).Should(BeEquivalentTo(1))
			for i := 2; i <= 30; i++ {
				fakeClock.Increment(time.Second)
				Eventually(greets.Load).Should(BeEquivalentTo(i))
			}
			fakeClock.Increment(time.Second)
			fakeClock.Increment(time.Second)
			Consistently(greets.Load).Should(BeEquivalentTo(30))
			Expect(emitter.RegisterInterval()).To(Equal(routeemitter.DefaultRegisterInterval))
		})

		It("takes a new router.start's interval and re-emits within 0.2 x interval", func() {
			fakeRouter(7)
			emitter = newEmitter()
			run(emitter)
			Eventually(emitter.RegisterInterval).Should(Equal(7 * time.Second))
			Expect(emitter.Register(logger, endpoint("g1"))).To(Succeed())
			Expect(emitter.Register(logger, endpoint("g2"))).To(Succeed())
			Eventually(rec.registers).Should(Equal(2))

			routerStart(5)
			Eventually(emitter.RegisterInterval).Should(Equal(5 * time.Second))
			fakeClock.Increment(time.Second) // 0.2 x 5s
			Eventually(rec.registers).Should(Equal(4))
			Consistently(rec.registers).Should(Equal(4))

			fakeClock.Increment(5 * time.Second)
			Eventually(rec.registers).Should(Equal(6))
			Consistently(rec.registers).Should(Equal(6))
		})
	})

	Describe("Register", func() {
		BeforeEach(func() {
			emitter = newEmitter()
			run(emitter)
		})

		It("sends Gorouter's message at once", func() {
			Expect(emitter.Register(logger, endpoint("g1"))).To(Succeed())
			Eventually(rec.registers).Should(Equal(1))
			rec.mu.Lock()
			raw := rec.raw[0]
			rec.mu.Unlock()
			var decoded gorouterMessage
			Expect(json.Unmarshal([]byte(raw), &decoded)).To(Succeed())
			Expect(decoded.Host).To(Equal("10.0.0.5"))
			Expect(decoded.Port).To(BeEquivalentTo(40001))
			Expect(decoded.TLSPort).To(BeEquivalentTo(40002))
			Expect(decoded.Uris).To(ConsistOf("g1.example.com"))
			Expect(decoded.PrivateInstanceIndex).To(Equal("0"))
			Expect(decoded.AvailabilityZone).To(Equal("z1"))
		})

		It("sets endpoint_updated_at_ns as route-emitter does: on an endpoint's first registration only", func() {
			Expect(emitter.Register(logger, endpoint("g1"))).To(Succeed())
			Eventually(rec.registers).Should(Equal(1))
			last := func() (routetable.RegistryMessage, string) {
				rec.mu.Lock()
				defer rec.mu.Unlock()
				return rec.registered[len(rec.registered)-1], rec.raw[len(rec.raw)-1]
			}
			m, _ := last()
			Expect(m.EndpointUpdatedAtNs).To(Equal(fakeClock.Now().UnixNano()), "added endpoint")

			By("the periodic re-emission carries none")
			fakeClock.Increment(cfg.DefaultRegisterInterval + routeemitter.DefaultRegisterInterval)
			Eventually(rec.registers).Should(BeNumerically(">=", 2))
			m, raw := last()
			Expect(m.EndpointUpdatedAtNs).To(BeZero())
			Expect(raw).NotTo(ContainSubstring("endpoint_updated_at_ns"))

			By("nor a new route on the same endpoint")
			n := rec.registers()
			ep := endpoint("g1")
			ep.Routes[0].Hostnames = append(ep.Routes[0].Hostnames, "more.example.com")
			Expect(emitter.Register(logger, ep)).To(Succeed())
			Eventually(rec.registers).Should(BeNumerically(">", n))
			m, _ = last()
			Expect(m.URIs).To(ContainElement("more.example.com"))
			Expect(m.EndpointUpdatedAtNs).To(BeZero())

			By("an endpoint added again after it was removed carries it again")
			Expect(emitter.Unregister(logger, "g1")).To(Succeed())
			fakeClock.Increment(time.Second)
			n = rec.registers()
			Expect(emitter.Register(logger, endpoint("g1"))).To(Succeed())
			Eventually(rec.registers).Should(BeNumerically(">", n))
			m, _ = last()
			Expect(m.EndpointUpdatedAtNs).To(Equal(fakeClock.Now().UnixNano()))
		})

		It("rejects invalid routes with ErrInvalidRoute and registers nothing", func() {
			ep := endpoint("g1")
			ep.Routes = append(ep.Routes, routeemitter.Route{Hostnames: []string{"x.example.com"}, Port: 9999})
			Expect(emitter.Register(logger, ep)).To(MatchError(routeemitter.ErrInvalidRoute))
			Expect(emitter.Registered("g1")).To(BeEmpty())
		})

		It("unregisters hostnames an instance no longer has, keeping the others", func() {
			ep := endpoint("g1")
			ep.Routes[0].Hostnames = []string{"a.example.com", "b.example.com"}
			Expect(emitter.Register(logger, ep)).To(Succeed())
			ep.Routes[0].Hostnames = []string{"a.example.com"}
			Expect(emitter.Register(logger, ep)).To(Succeed())
			Eventually(rec.unregisters).Should(Equal(1))
			Expect(rec.lastUnregister().URIs).To(Equal([]string{"b.example.com"}))
			Expect(emitter.Registered("g1")[0].URIs).To(Equal([]string{"a.example.com"}))
		})
	})

	Describe("Unregister", func() {
		var sub *nats.Subscription

		BeforeEach(func() {
			var err error
			sub, err = client.SubscribeSync(routetable.SubjectUnregister)
			Expect(err).NotTo(HaveOccurred())
			Expect(client.Flush()).To(Succeed())
			emitter = newEmitter()
			run(emitter)
			Expect(emitter.Register(logger, endpoint("g1"))).To(Succeed())
			Eventually(rec.registers).Should(Equal(1))
		})

		It("has the NATS server deliver the unregister before it returns", func() {
			Expect(emitter.Unregister(logger, "g1")).To(Succeed())
			// The server handled the emitter's PUB before answering its
			// flush PING, so the MSG is queued to this subscriber ahead of
			// the PONG of this client's own flush.
			Expect(client.Flush()).To(Succeed())
			n, _, err := sub.Pending()
			Expect(err).NotTo(HaveOccurred())
			Expect(n).To(Equal(1))
			msg, err := sub.NextMsg(time.Second)
			Expect(err).NotTo(HaveOccurred())
			var decoded gorouterMessage
			Expect(json.Unmarshal(msg.Data, &decoded)).To(Succeed())
			Expect(decoded.Host).To(Equal("10.0.0.5"))
			Expect(decoded.Port).To(BeEquivalentTo(40001))
			Expect(decoded.TLSPort).To(BeEquivalentTo(40002))
			Expect(decoded.Uris).To(ConsistOf("g1.example.com"))
		})

		It("repeats at +5s, +15s, +30s and +60s, then stops, and stops re-registering", func() {
			Expect(emitter.Unregister(logger, "g1")).To(Succeed())
			Eventually(rec.unregisters).Should(Equal(1))
			steps := []struct {
				advance time.Duration
				want    int
			}{
				{4 * time.Second, 1}, {1 * time.Second, 2},
				{9 * time.Second, 2}, {1 * time.Second, 3},
				{14 * time.Second, 3}, {1 * time.Second, 4},
				{29 * time.Second, 4}, {1 * time.Second, 5},
				{60 * time.Second, 5}, {60 * time.Second, 5},
			}
			for _, s := range steps {
				fakeClock.Increment(s.advance)
				Eventually(rec.unregisters).Should(Equal(s.want))
			}
			Consistently(rec.unregisters).Should(Equal(5))
			Expect(rec.registers()).To(Equal(1), "no re-registration after Unregister")
		})

		It("is cancelled by a new Register of the same routes", func() {
			Expect(emitter.Unregister(logger, "g1")).To(Succeed())
			Eventually(rec.unregisters).Should(Equal(1))
			Expect(emitter.Register(logger, endpoint("g1"))).To(Succeed())
			Eventually(rec.registers).Should(Equal(2))
			for i := range 4 {
				fakeClock.Increment(20 * time.Second) // passes +5s, +15s, +30s, +60s
				Eventually(rec.registers).Should(Equal(3+i), "re-registered every 20s again")
				Expect(rec.unregisters()).To(Equal(1))
			}
			Consistently(rec.unregisters).Should(Equal(1))
		})

		It("is a no-op for an unknown guid", func() {
			Expect(emitter.Unregister(logger, "nope")).To(Succeed())
			Consistently(rec.unregisters).Should(BeZero())
		})
	})

	Describe("journal and Recover", func() {
		It("unregisters, after a crash, the journaled routes of containers that are gone", func() {
			first := newEmitter()
			p := run(first)
			Expect(first.Register(logger, endpoint("gone"))).To(Succeed())
			Expect(first.Register(logger, endpoint("kept"))).To(Succeed())
			Eventually(rec.registers).Should(Equal(2))
			p.Signal(os.Kill) // the agent "crashes": routes stay, journal stays
			Eventually(p.Wait()).Should(Receive())

			second := newEmitter()
			run(second)
			Consistently(rec.unregisters).Should(BeZero(), "nothing happens before Recover")
			Expect(second.Recover(logger, func(guid string) bool { return guid == "kept" })).To(Succeed())
			Eventually(rec.unregisters).Should(Equal(1))
			Expect(rec.lastUnregister().PrivateInstanceID).To(Equal("gone"))
			Expect(rec.lastUnregister().URIs).To(ConsistOf("gone.example.com"))

			// Tombstones repeat like any unregistration.
			fakeClock.Increment(5 * time.Second)
			Eventually(rec.unregisters).Should(Equal(2))

			// The kept one is re-emitted only once the agent registers it again.
			fakeClock.Increment(20 * time.Second)
			Consistently(rec.registers).Should(Equal(2))
			Expect(second.Register(logger, endpoint("kept"))).To(Succeed())
			Eventually(rec.registers).Should(Equal(3))
			fakeClock.Increment(routeemitter.DefaultAdoptionGrace)
			Consistently(rec.lastUnregister).Should(HaveField("PrivateInstanceID", "gone"))
		})

		It("writes the journal once for the registrations that queued behind a write, and holds them all", func() {
			e := newEmitter()
			run(e)
			before, turns := e.JournalWrites(), e.JournalTurns()
			release := e.HoldJournal() // a write in progress
			const n = 8
			done := make(chan error, n)
			for i := range n {
				go func() { done <- e.Register(logger, endpoint(fmt.Sprintf("q%d", i))) }()
			}
			Eventually(e.JournalTurns).Should(Equal(turns + n))
			release()
			for range n {
				Expect(<-done).To(Succeed())
			}
			Expect(e.JournalWrites()-before).To(Equal(1), "one write covered every queued registration")

			var journal struct {
				Registered map[string][]routetable.RegistryMessage `json:"registered"`
			}
			data, err := os.ReadFile(filepath.Join(cfg.DataDir, "routeemitter", "routes.json"))
			Expect(err).NotTo(HaveOccurred())
			Expect(json.Unmarshal(data, &journal)).To(Succeed())
			Expect(journal.Registered).To(HaveLen(n))

			// A later change is not covered by that write: it writes again.
			Expect(e.Register(logger, endpoint("later"))).To(Succeed())
			Expect(e.JournalWrites() - before).To(Equal(2))
		})

		It("sends a new registration only once the journal holds it, and re-emits nothing of it before", func() {
			e := newEmitter()
			run(e)
			before := rec.registers()
			release := e.HoldJournal() // a write in progress: g1's waits
			done := make(chan error, 1)
			go func() { done <- e.Register(logger, endpoint("g1")) }()
			Eventually(e.Registered).WithArguments("g1").ShouldNot(BeEmpty())
			Expect(e.Register(logger, endpoint("g1"))).To(Succeed(), "the same routes again: no change, no journal write")
			fakeClock.Increment(routeemitter.DefaultRegisterInterval + time.Second) // a re-emission round
			Consistently(rec.registers, 300*time.Millisecond).Should(Equal(before), "a killed agent's restart would not know the route")
			release()
			Expect(<-done).To(Succeed())
			Eventually(rec.registers).Should(Equal(before + 1))
			data, err := os.ReadFile(filepath.Join(cfg.DataDir, "routeemitter", "routes.json"))
			Expect(err).NotTo(HaveOccurred())
			Expect(string(data)).To(ContainSubstring(`"g1"`))
		})

		It("keeps the journal as JSON under the data dir, and moves an unreadable one aside", func() {
			e := newEmitter()
			run(e)
			Expect(e.Register(logger, endpoint("g1"))).To(Succeed())
			path := filepath.Join(cfg.DataDir, "routeemitter", "routes.json")
			var journal struct {
				Version    int                                     `json:"version"`
				Registered map[string][]routetable.RegistryMessage `json:"registered"`
			}
			data, err := os.ReadFile(path)
			Expect(err).NotTo(HaveOccurred())
			Expect(json.Unmarshal(data, &journal)).To(Succeed())
			Expect(journal.Registered).To(HaveKey("g1"))
			entries, err := os.ReadDir(filepath.Dir(path))
			Expect(err).NotTo(HaveOccurred())
			Expect(entries).To(HaveLen(1), "no temp files left behind")

			Expect(os.WriteFile(path, []byte("{not json"), 0o600)).To(Succeed())
			again := newEmitter()
			Expect(again.Recover(logger, func(string) bool { return false })).To(Succeed())
			Expect(path + ".corrupt").To(BeAnExistingFile())
		})

		It("unregisters kept guids the agent never claims within the adoption grace", func() {
			first := newEmitter()
			p := run(first)
			Expect(first.Register(logger, endpoint("g1"))).To(Succeed())
			p.Signal(os.Kill)
			Eventually(p.Wait()).Should(Receive())

			cfg.AdoptionGrace = time.Minute
			second := newEmitter()
			run(second)
			Expect(second.Recover(logger, func(string) bool { return true })).To(Succeed())
			fakeClock.Increment(59 * time.Second)
			Consistently(rec.unregisters).Should(BeZero())
			fakeClock.Increment(time.Second)
			Eventually(rec.unregisters).Should(Equal(1))
			Expect(rec.lastUnregister().PrivateInstanceID).To(Equal("g1"))
		})

		It("resumes repeating unregistrations that were pending at the crash", func() {
			first := newEmitter()
			p := run(first)
			Expect(first.Register(logger, endpoint("g1"))).To(Succeed())
			Expect(first.Unregister(logger, "g1")).To(Succeed())
			Eventually(rec.unregisters).Should(Equal(1))
			p.Signal(os.Kill)
			Eventually(p.Wait()).Should(Receive())

			run(newEmitter())
			Eventually(rec.unregisters).Should(Equal(2))
		})

		It("lets Unregister of an adopted but not re-registered guid use the journaled routes", func() {
			first := newEmitter()
			p := run(first)
			Expect(first.Register(logger, endpoint("g1"))).To(Succeed())
			p.Signal(os.Kill)
			Eventually(p.Wait()).Should(Receive())

			second := newEmitter()
			run(second)
			Expect(second.Recover(logger, func(string) bool { return true })).To(Succeed())
			Expect(second.Unregister(logger, "g1")).To(Succeed())
			Eventually(rec.unregisters).Should(Equal(1))
			Expect(rec.lastUnregister().Port).To(BeEquivalentTo(40001))
		})
	})

	Describe("connection", func() {
		It("reports disconnected before Run", func() {
			Expect(newEmitter().ConnectionState()).To(Equal(routeemitter.StateDisconnected))
		})

		It("resumes registrations after the NATS server restarts on the same port", func() {
			emitter = newEmitter()
			run(emitter)
			Expect(emitter.Register(logger, endpoint("g1"))).To(Succeed())
			Eventually(rec.registers).Should(Equal(1))

			srv.stop()
			Eventually(emitter.ConnectionState).Should(Equal(routeemitter.StateReconnecting))
			srv.start()
			Eventually(emitter.ConnectionState).Should(Equal(routeemitter.StateConnected))
			Eventually(client.IsConnected).Should(BeTrue())

			before := rec.registers()
			Eventually(func() int {
				fakeClock.Increment(routeemitter.DefaultRegisterInterval)
				return rec.registers()
			}).Should(BeNumerically(">", before))
		})

		It("queues an Unregister made while NATS is down and sends it on reconnect", func() {
			emitter = newEmitter()
			run(emitter)
			Expect(emitter.Register(logger, endpoint("g1"))).To(Succeed())
			Eventually(rec.registers).Should(Equal(1))

			srv.stop()
			Eventually(emitter.ConnectionState).Should(Equal(routeemitter.StateReconnecting))
			Expect(emitter.Unregister(logger, "g1")).To(MatchError(routeemitter.ErrNotConnected))
			srv.start()
			Eventually(emitter.ConnectionState).Should(Equal(routeemitter.StateConnected))
			// This client may resubscribe after the emitter's reconnect
			// re-sent the unregister; the +5s repeat reaches it for sure.
			Eventually(client.IsConnected).Should(BeTrue())
			Expect(client.Flush()).To(Succeed())
			fakeClock.Increment(5 * time.Second)
			Eventually(rec.unregisters).Should(BeNumerically(">=", 1))
			Expect(rec.lastUnregister().PrivateInstanceID).To(Equal("g1"))
		})
	})
})
