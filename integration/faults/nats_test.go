package faults_test

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

// startNATS starts a nats-server in the test process on 127.0.0.1:port.
func startNATS(port int) *server.Server {
	s, err := server.NewServer(&server.Options{ServerName: "faults-nats", Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
	Expect(err).NotTo(HaveOccurred())
	go s.Start()
	Expect(s.ReadyForConnections(10 * time.Second)).To(BeTrue())
	return s
}

// agentConnected tells whether s holds the agent's route-emitter connection.
func agentConnected(s *server.Server, agent *testagent.Agent) bool {
	connz, err := s.Connz(&server.ConnzOptions{Limit: 1024})
	if err != nil {
		return false
	}
	for _, c := range connz.Conns {
		if c.Name == "cellagent-"+agent.Config.CellID {
			return true
		}
	}
	return false
}

var _ = Describe("NATS unavailable for 30s", func() {
	It("keeps the route journal, sends the unregister it owes and registers again within one interval of the return", func() {
		const (
			outage   = 30 * time.Second
			interval = 2 // minimumRegisterIntervalInSeconds
			// nats.go's reconnect attempts of the agent are this far apart
			// (routeemitter.DefaultReconnectWait).
			reconnectWait = 2 * time.Second
		)
		port, err := testagent.FreePort()
		Expect(err).NotTo(HaveOccurred())
		url := fmt.Sprintf("nats://127.0.0.1:%d", port)
		ns := startNATS(port)
		DeferCleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })

		agent := startAgent("ftn", func(c *config.Config) { c.NATS.URLs = []string{url} })
		nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(nc.Close)
		rec := &routeRecorder{}
		rec.subscribe(nc)
		guids := []string{"na-1", "na-2", "na-3"}
		cs := map[string]executor.Container{}
		for _, g := range guids {
			cs[g] = runRoutable(agent, g, request(g+".example.com"))
		}
		routerStart(nc, interval)
		t := time.Now()
		for _, g := range guids {
			Eventually(func() bool { _, ok := rec.first("router.register", g, t); return ok }, 10*time.Second).Should(BeTrue(), g)
		}
		Expect(routeJournal(agent)).To(Equal(map[string]bool{"na-1": true, "na-2": true, "na-3": true}))

		By("the server goes away for 30s")
		ns.Shutdown()
		ns.WaitForShutdown()
		nc.Close()
		down := time.Now()
		Eventually(func() string { st, _ := agent.Client.State(ctx); return st.NATS }, 10*time.Second).ShouldNot(Equal("connected"))

		By("meanwhile na-3 is deleted (its unregister cannot be sent) and the others keep running")
		Expect(agent.Client.Delete(ctx, "na-3")).To(Succeed())
		Expect(routeJournal(agent)).To(Equal(map[string]bool{"na-1": true, "na-2": true}), "journal while NATS is away")
		for _, g := range []string{"na-1", "na-2"} {
			c, err := agent.Client.Get(ctx, g)
			Expect(err).NotTo(HaveOccurred())
			Expect(c.State).To(Equal(executor.StateRunning))
			Expect(c.Routable).To(BeTrue())
		}
		time.Sleep(time.Until(down.Add(outage)))

		By("the server returns on the same port")
		ns = startNATS(port)
		back := time.Now()
		// A new subscriber at once: the agent reconnects up to 2s later.
		nc2, err := nats.Connect(url)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(nc2.Close)
		rec2 := &routeRecorder{}
		rec2.subscribe(nc2)
		var reconnected time.Time
		Eventually(func() bool { return agentConnected(ns, agent) }, reconnectWait+3*time.Second, 20*time.Millisecond).Should(BeTrue())
		reconnected = time.Now()
		for _, g := range []string{"na-1", "na-2"} {
			Eventually(func() bool { _, ok := rec2.first("router.register", g, back); return ok },
				reconnectWait+time.Duration(interval)*time.Second+3*time.Second, 20*time.Millisecond).Should(BeTrue(), g)
		}
		Eventually(func() bool { _, ok := rec2.first("router.unregister", "na-3", back); return ok }, 10*time.Second).
			Should(BeTrue(), "the unregister owed for na-3 is sent after the return")
		var worst time.Duration
		for _, g := range []string{"na-1", "na-2"} {
			at, _ := rec2.first("router.register", g, back)
			worst = max(worst, at.Sub(reconnected))
		}
		GinkgoWriter.Printf("agent reconnected %s after the server returned; registrations resumed %s after that\n",
			reconnected.Sub(back).Round(time.Millisecond), worst.Round(time.Millisecond))
		Expect(worst).To(BeNumerically("<=", time.Duration(interval)*time.Second+500*time.Millisecond),
			"registrations resume within one register interval of the reconnect")

		By("registrations go on at the interval; none for the deleted instance")
		time.Sleep(time.Duration(2*interval)*time.Second + 500*time.Millisecond)
		for _, g := range []string{"na-1", "na-2"} {
			n := 0
			for _, m := range rec2.since("router.register", back) {
				if m.GUID == g {
					n++
				}
			}
			Expect(n).To(BeNumerically(">=", 2), "%s registered repeatedly after the return", g)
		}
		_, na3 := rec2.first("router.register", "na-3", back)
		Expect(na3).To(BeFalse(), "no registration for the deleted na-3")
		Expect(routeJournal(agent)).To(Equal(map[string]bool{"na-1": true, "na-2": true}))
		Expect(agent.Client.State(ctx)).To(HaveField("NATS", "connected"))
		for _, g := range []string{"na-1", "na-2"} {
			answers(cs[g])
		}

		expectNothingOrphaned(agent)
		deleteAllAndExpectEmpty(agent)
		tableRow(fmt.Sprintf("NATS server down %s (external, same port after)", outage), 1,
			fmt.Sprintf("nothing: journal kept 2/2 routes, owed unregister sent; agent back %s after the server, registrations %s after that",
				reconnected.Sub(back).Round(100*time.Millisecond), worst.Round(100*time.Millisecond)))
	})
})
