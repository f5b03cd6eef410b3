package faults_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

// The other specs end with "nothing orphaned": this one shows that the
// inventory would see each kind of leftover if there were one.
var _ = Describe("the inventory", func() {
	It("sees every resource of a running instance, and names all of them orphaned when the agent does not list it", func() {
		agent := startAgent("fti", nil)
		nc, err := nats.Connect(agent.NATSURL())
		Expect(err).NotTo(HaveOccurred())
		defer nc.Close()
		rec := &routeRecorder{}
		rec.subscribe(nc)
		t := time.Now()
		c := runRoutable(agent, "inv-1", request("inv-1.example.com"))
		Eventually(func() bool { _, ok := rec.first("router.register", "inv-1", t); return ok }, 10*time.Second).Should(BeTrue())
		Eventually(func() map[string]bool { return routeJournal(agent) }, 5*time.Second).Should(HaveKey("inv-1"))

		inv, err := testagent.TakeInventory(agent)
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Println(inv.Count())
		Expect(inv.Problems([]executor.Container{c})).To(BeEmpty())

		problems := strings.Join(inv.Problems(nil), "\n")
		for _, kind := range []string{"containerd container", "snapshot", "task", "netns", "veth", "nat rule",
			"IPAM lease", "network state", "host ports", "credential dir", "proxy dir", "log dir", "record", "cgroup",
			"journaled registration"} {
			Expect(problems).To(ContainSubstring(fmt.Sprintf("orphaned %s of %q", kind, "inv-1")))
		}
		Expect(problems).NotTo(ContainSubstring("(no owner)"), "every rule and veth is attributed to its instance")

		By("a completed container whose task still runs is named")
		c.State = executor.StateCompleted
		Expect(inv.Problems([]executor.Container{c})).To(ContainElements(
			ContainSubstring(`task of "inv-1" still RUNNING`), ContainSubstring(`journaled registration of "inv-1", which is completed`)))

		deleteAllAndExpectEmpty(agent)
	})
})
