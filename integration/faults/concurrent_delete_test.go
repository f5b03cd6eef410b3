// Concurrent deletes: every instance's network teardown (host port
// forwards in the nftables table, CNI DEL, netns, IPAM) must complete even
// when they all run at once. Written when CNI's portmap still made the
// forwards, after two runs in which a concurrent delete failed ("could not
// teardown ipv4 dnat: iptables -t nat -X CNI-DN-...: exit status 4") and
// another left its DNAT rules behind; kept for the nftables forwards.

package faults_test

import (
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("concurrent deletes", func() {
	It("remove every instance's nat rules, whatever the concurrency", func() {
		const (
			rounds    = 2
			instances = 20
		)
		agent := startAgent("ftcd", nil)
		var failed []string
		for r := range rounds {
			var wg sync.WaitGroup
			for i := range instances {
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer GinkgoRecover()
					guid := fmt.Sprintf("cd-%d-%02d", r, i)
					_, err := agent.Client.AllocateAndRun(ctx, guid, request())
					Expect(err).NotTo(HaveOccurred())
					_, err = agent.WaitState(guid, executor.StateRunning, 90*time.Second)
					Expect(err).NotTo(HaveOccurred())
				}()
			}
			wg.Wait()
			var mu sync.Mutex
			for i := range instances {
				wg.Add(1)
				go func() {
					defer wg.Done()
					guid := fmt.Sprintf("cd-%d-%02d", r, i)
					if err := agent.Client.Delete(ctx, guid); err != nil {
						mu.Lock()
						failed = append(failed, err.Error())
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			Expect(failed).To(BeEmpty(), "round %d: deletes that failed", r)
			expectEmpty(agent)
		}
		tableRow(fmt.Sprintf("%d concurrent deletes (proxy on)", instances), rounds, "nothing")
	})
})
