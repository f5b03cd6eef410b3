package faults_test

import (
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("agent killed with SIGKILL in the middle of 30 concurrent starts", func() {
	It("adopts what runs, completes the rest with a reason, leaves nothing orphaned and no route to a missing container", func() {
		const n = 30
		agent := startAgent("ftk", nil)

		By("30 starts at once")
		acked := make([]bool, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := agent.Client.AllocateAndRun(ctx, fmt.Sprintf("k9-%02d", i), request(fmt.Sprintf("k9-%02d.example.com", i)))
				acked[i] = err == nil
			}()
		}

		By("kill -9 once the first instances run and others are still starting")
		var atKill []executor.Container
		Eventually(func() int {
			cs, _ := agent.Client.List(ctx)
			running := 0
			for _, c := range cs {
				if c.State == executor.StateRunning {
					running++
				}
			}
			atKill = cs
			return running
		}, 60*time.Second, 20*time.Millisecond).Should(BeNumerically(">=", 3))
		agent.Kill9()
		wg.Wait()
		GinkgoWriter.Printf("at the kill: %s (of %d listed)\n", summary(atKill), len(atKill))
		notRunning := 0
		for _, c := range atKill {
			if c.State != executor.StateRunning {
				notRunning++
			}
		}
		Expect(notRunning+n-len(atKill)).To(BeNumerically(">", 0), "the kill must land while starts are in flight")

		By("restart")
		Expect(agent.Start()).To(Succeed())
		events := collectEvents(agent, 0)
		var after []executor.Container
		Eventually(func(g Gomega) {
			var err error
			after, err = agent.Client.List(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			for _, c := range after {
				g.Expect(c.State).To(Or(Equal(executor.StateRunning), Equal(executor.StateCompleted)), c.GUID)
				if c.State == executor.StateRunning {
					g.Expect(c.Routable).To(BeTrue(), "%s running but not routable", c.GUID)
				}
			}
		}, 90*time.Second, 250*time.Millisecond).Should(Succeed())
		GinkgoWriter.Printf("after the restart: %s\n", summary(after))

		listed := map[string]executor.Container{}
		for _, c := range after {
			listed[c.GUID] = c
		}
		lost := 0
		var running []executor.Container
		for i := range n {
			guid := fmt.Sprintf("k9-%02d", i)
			c, ok := listed[guid]
			if !ok {
				// Never acknowledged, or acknowledged and gone: an
				// acknowledged start must not vanish without a trace.
				if acked[i] {
					lost++
					GinkgoWriter.Printf("%s was acknowledged but is not listed after the restart\n", guid)
				}
				continue
			}
			switch c.State {
			case executor.StateRunning:
				running = append(running, c)
				// The stream replays the buffer from its start, but a
				// goroutine reads it: the list above can be all routable
				// before the reader has caught up (seen once in CI).
				Eventually(func() []executor.Event { return events.of(executor.EventContainerAdopted, guid) }, 10*time.Second, 50*time.Millisecond).
					ShouldNot(BeEmpty(), func() string {
						return fmt.Sprintf("%s runs, so it was adopted; stream closed %v after %d events; its events:\n%s",
							guid, events.isClosed(), len(events.all()), events.describe(guid))
					})
				answers(c)
			case executor.StateCompleted:
				Expect(c.RunResult.Failed).To(BeTrue(), guid)
				Expect(c.RunResult.FailureReason).NotTo(BeEmpty(), guid)
			}
		}
		Expect(lost).To(BeZero(), "acknowledged starts that vanished")
		for _, c := range atKill {
			if c.State == executor.StateRunning {
				Expect(listed[c.GUID].State).To(Equal(executor.StateRunning), "%s ran before the kill: it must be adopted, not completed (%s)",
					c.GUID, listed[c.GUID].RunResult.FailureReason)
			}
		}

		By("every route registered after the restart belongs to a running container, and every running one is registered")
		nc, err := nats.Connect(agent.NATSURL())
		Expect(err).NotTo(HaveOccurred())
		defer nc.Close()
		rec := &routeRecorder{}
		rec.subscribe(nc)
		from := time.Now()
		routerStart(nc, 2)
		time.Sleep(5 * time.Second) // collect two full register intervals
		registered := map[string]bool{}
		for _, m := range rec.since("router.register", from) {
			registered[m.GUID] = true
		}
		for guid := range registered {
			c, err := agent.Client.Get(ctx, guid)
			Expect(err).NotTo(HaveOccurred(), "a route is registered for %s, which does not exist", guid)
			Expect(c.State).To(Equal(executor.StateRunning), "a route is registered for %s, which is %s", guid, c.State)
		}
		for _, c := range running {
			Expect(registered).To(HaveKey(c.GUID), "running and routable but not registered")
		}
		journal := routeJournal(agent)
		for guid := range journal {
			Expect(listed[guid].State).To(Equal(executor.StateRunning), "journaled route of %s", guid)
		}

		expectNothingOrphaned(agent)
		deleteAllAndExpectEmpty(agent)
		tableRow(fmt.Sprintf("agent kill -9 during %d concurrent starts (proxy on)", n), 1,
			fmt.Sprintf("%d lost (%d adopted running, %d completed with a reason, %d never acknowledged)",
				lost, len(running), len(after)-len(running), n-len(after)))
	})
})
