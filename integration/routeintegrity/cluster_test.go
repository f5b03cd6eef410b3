package routeintegrity_test

import (
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
	"github.com/cellagent/cellagent/routeemitter/routetable"
)

// registerLog records when each instance's router.register arrived.
type registerLog struct {
	mu sync.Mutex
	at map[string][]time.Time // guid -> arrivals
}

func (l *registerLog) add(m *nats.Msg) {
	var msg routetable.RegistryMessage
	if json.Unmarshal(m.Data, &msg) != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at[msg.PrivateInstanceID] = append(l.at[msg.PrivateInstanceID], time.Now())
}

// since counts guid's registrations that arrived after t.
func (l *registerLog) since(guid string, t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, at := range l.at[guid] {
		if at.After(t) {
			n++
		}
	}
	return n
}

var _ = Describe("route registration on a NATS cluster", func() {
	It("keeps registrations from two agents arriving when the servers they are connected to shut down", func() {
		cluster, err := testagent.StartNATSCluster(3)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(cluster.Shutdown) // registered first: runs after the agents' cleanup

		cells := []struct {
			netw      cellNetwork
			guid, uri string
		}{
			{cellNetwork{"cellagentc1", "10.254.120.0/24", "48100-48199"}, "ri-c1", "c1.ri.example.com"},
			{cellNetwork{"cellagentc2", "10.254.121.0/24", "48200-48299"}, "ri-c2", "c2.ri.example.com"},
		}
		var agents []*testagent.Agent
		var containers []executor.Container
		for _, cell := range cells {
			agent := startAgent("ric", cell.netw, func(c *config.Config) { c.NATS.URLs = cluster.URLs() })
			agents = append(agents, agent)
			containers = append(containers, runRoutable(agent, cell.guid, cell.uri))
		}

		By("finding the servers the agents are connected to; the watcher uses one neither is on")
		var agentNodes []int
		for _, agent := range agents {
			var node int
			Eventually(func() int {
				node = cluster.ServerOf("cellagent-" + agent.Config.CellID)
				return node
			}, 10*time.Second).ShouldNot(Equal(-1))
			if !slices.Contains(agentNodes, node) {
				agentNodes = append(agentNodes, node)
			}
		}
		watcherNode := -1
		for i := range cluster.Servers {
			if !slices.Contains(agentNodes, i) {
				watcherNode = i
				break
			}
		}
		Expect(watcherNode).NotTo(Equal(-1))
		nc, err := nats.Connect(cluster.Servers[watcherNode].ClientURL(), nats.NoReconnect())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(nc.Close)
		regs := &registerLog{at: map[string][]time.Time{}}
		_, err = nc.Subscribe(routetable.SubjectRegister, regs.add)
		Expect(err).NotTo(HaveOccurred())
		Expect(nc.Flush()).To(Succeed())

		By("a router starts and asks for re-registration every 2s")
		started := time.Now()
		Expect(nc.Publish(routetable.SubjectStart,
			[]byte(`{"id":"it-router","hosts":["127.0.0.1"],"minimumRegisterIntervalInSeconds":2,"pruneThresholdInSeconds":6}`))).To(Succeed())
		for _, cell := range cells {
			// router.start's prompt re-emission, then two rounds at 2s (+ jitter).
			Eventually(func() int { return regs.since(cell.guid, started) }, 10*time.Second, 100*time.Millisecond).
				Should(BeNumerically(">=", 3), "registrations of %s seen on another server", cell.guid)
		}

		By("shutting down every server an agent is connected to")
		for _, node := range agentNodes {
			cluster.Stop(node)
		}
		stopped := time.Now()
		for i, agent := range agents {
			Eventually(func() int { return cluster.ServerOf("cellagent-" + agent.Config.CellID) }, 15*time.Second).
				Should(And(Not(Equal(-1)), Not(BeElementOf(agentNodes))), "agent %d reconnected to a live server", i)
		}
		for _, cell := range cells {
			// The reconnect re-emits at once; then every 2s.
			Eventually(func() int { return regs.since(cell.guid, stopped) }, 20*time.Second, 100*time.Millisecond).
				Should(BeNumerically(">=", 3), "registrations of %s keep arriving after the failover", cell.guid)
		}

		By("a router that starts after the failover learns both routes and reaches the right instances")
		router, err := newTestRouter(nc, identityCA(agents[0]), identityCA(agents[1]))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(router.close)
		for i, cell := range cells {
			Eventually(func() []string { return sans(router.endpoints(cell.uri)) }, 10*time.Second).
				Should(Equal([]string{cell.guid}))
			Expect(router.endpoints(cell.uri)[0].Address()).To(Equal(tlsAddress(containers[i])))
			s, err := router.get(cell.uri)
			Expect(err).NotTo(HaveOccurred())
			Expect(answeredBy(s.Body)).To(Equal(cell.guid))
		}
	})
})
