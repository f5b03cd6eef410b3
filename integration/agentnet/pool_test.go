package agentnet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

var _ = Describe("a pool of prepared network namespaces", func() {
	const (
		netName = "cellagentap"
		subnet  = "10.254.105.0/24"
	)
	var (
		agent *testagent.Agent
		ctx   = context.Background()
	)

	BeforeEach(func() {
		var err error
		agent, err = testagent.New(GinkgoT().TempDir(), fmt.Sprintf("pool%d", time.Now().UnixNano()%100000), func(c *config.Config) {
			c.Network.Mode = "bridge"
			c.Network.Name = netName
			c.Network.Bridge = "cellagentap0"
			c.Network.Subnet = subnet
			c.Network.HostPortRange = "46020-46029"
			c.Network.PoolSize = 3
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(agent.Start()).To(Succeed())
		DeferCleanup(func() {
			agent.Cleanup()
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Println(agent.LogText())
			}
		})
	})

	inventory := func() testagent.Inventory {
		GinkgoHelper()
		inv, err := testagent.TakeInventory(agent)
		Expect(err).NotTo(HaveOccurred())
		return inv
	}
	pooledNetns := func() []string {
		var ids []string
		for _, id := range inventory().Netns {
			if strings.HasPrefix(id, "pool.") {
				ids = append(ids, id)
			}
		}
		return ids
	}
	// poolSlotOf reads which pooled namespace guid's network state names.
	poolSlotOf := func(guid string) string {
		b, err := os.ReadFile(filepath.Join(agent.Config.DataDir, "network", "containers", guid+".json"))
		if err != nil {
			return ""
		}
		var st struct {
			PoolSlot string `json:"pool_slot"`
		}
		Expect(json.Unmarshal(b, &st)).To(Succeed())
		return st.PoolSlot
	}
	// accounted checks that every namespace, veth, address and nft entry of
	// the network belongs to a container the agent has or to the pool, and
	// that the pool holds exactly size namespaces, each with one address
	// and one veth, and no filter or forward of its own.
	accounted := func(size int) error {
		inv := inventory()
		cs, err := agent.Client.List(ctx)
		if err != nil {
			return err
		}
		owners := map[string]string{} // CNI ID (lease owner) -> netns id
		for _, c := range cs {
			id := c.GUID
			if slot := poolSlotOf(c.GUID); slot != "" {
				id = slot
			}
			owners[id] = c.GUID
		}
		pooled := 0
		for _, n := range inv.Netns {
			switch {
			case strings.HasPrefix(n, "pool."):
				pooled++
				owners[n] = n
			case !slices.ContainsFunc(cs, func(c executor.Container) bool { return c.GUID == n }):
				return fmt.Errorf("netns %s belongs to no container and not to the pool", n)
			}
		}
		if pooled != size {
			return fmt.Errorf("%d pooled namespaces, want %d", pooled, size)
		}
		if len(inv.IPAM) != len(inv.Netns) {
			return fmt.Errorf("%d addresses leased for %d namespaces: %v", len(inv.IPAM), len(inv.Netns), inv.IPAM)
		}
		for ip, id := range inv.IPAM {
			if _, ok := owners[id]; !ok {
				return fmt.Errorf("address %s leased to %s, which is neither a container nor a pooled namespace", ip, id)
			}
		}
		if len(inv.Veths) != len(inv.Netns) {
			return fmt.Errorf("%d veths on the bridge for %d namespaces: %v", len(inv.Veths), len(inv.Netns), inv.Veths)
		}
		for veth, peer := range inv.Veths {
			if !slices.Contains(inv.Netns, peer) {
				return fmt.Errorf("veth %s leads to netns %q, not one of %v", veth, peer, inv.Netns)
			}
		}
		for rule, owner := range inv.Rules {
			if owner != "" && !slices.ContainsFunc(cs, func(c executor.Container) bool { return c.GUID == owner }) {
				return fmt.Errorf("nft entry of %q, no container: %s", owner, rule)
			}
		}
		return nil
	}
	run := func(guid string) executor.Container {
		GinkgoHelper()
		_, err := agent.Client.AllocateAndRun(ctx, guid, request())
		Expect(err).NotTo(HaveOccurred())
		c, err := agent.WaitState(guid, executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		return c
	}
	inNetns := func(guid string, args ...string) (string, error) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", netName + "-" + guid}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}

	It("gives starts prepared namespaces with their own filter, and kill -9 with a partly used pool leaks nothing", func() {
		baseRules := inventory().Rules
		Eventually(pooledNetns, 20*time.Second, 100*time.Millisecond).Should(HaveLen(3))
		poolIPs := map[string]bool{}
		for ip, id := range inventory().IPAM {
			Expect(id).To(HavePrefix("pool."))
			poolIPs[ip] = true
		}

		a := run("p-1")
		b := run("p-2")
		By("their namespaces and addresses came from the pool")
		Expect(poolIPs).To(HaveKey(a.InternalIP))
		Expect(poolIPs).To(HaveKey(b.InternalIP))
		Expect(poolSlotOf("p-1")).To(HavePrefix("pool."))
		Expect(inventory().Netns).To(ContainElements("p-1", "p-2"))

		By("they serve on their host ports, with IPv6 off and their own filter")
		for _, c := range []executor.Container{a, b} {
			Expect(get(fmt.Sprintf("http://127.0.0.1:%d/", c.Ports[0].HostPort))).To(ContainSubstring("hello from " + c.GUID))
			Expect(inNetns(c.GUID, "cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6")).To(Equal("1"))
		}
		rules, err := testagent.NFTContainerRules(netName)
		Expect(err).NotTo(HaveOccurred())
		Expect(rules).To(ContainElements("p-1", "p-2"))
		By("one cannot reach the other's port directly, the host can, with the same probe")
		probe := func(args ...string) (string, error) {
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Stdin = strings.NewReader("GET / HTTP/1.0\r\n\r\n")
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		nc := []string{"busybox", "nc", "-w", "2", b.InternalIP, "8080"}
		Expect(probe(nc...)).To(ContainSubstring("hello from p-2"))
		out, err := probe(append([]string{"ip", "netns", "exec", netName + "-p-1"}, nc...)...)
		Expect(err).To(HaveOccurred(), out)
		Expect(out).NotTo(ContainSubstring("hello"))

		Eventually(func() error { return accounted(3) }, 20*time.Second, 200*time.Millisecond).Should(Succeed())

		By("kill -9 while a start claims and the pool refills")
		_, err = agent.Client.AllocateAndRun(ctx, "p-3", request())
		Expect(err).NotTo(HaveOccurred())
		agent.Kill9()
		Expect(agent.Start()).To(Succeed())

		c, err := agent.Client.Get(ctx, "p-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(c.InternalIP).To(Equal(a.InternalIP))
		Expect(get(fmt.Sprintf("http://127.0.0.1:%d/", c.Ports[0].HostPort))).To(ContainSubstring("hello from p-1"))
		Eventually(func() error { return accounted(3) }, 30*time.Second, 200*time.Millisecond).Should(Succeed())
		d := run("p-4")
		Expect(d.InternalIP).NotTo(BeElementOf(a.InternalIP, b.InternalIP), "no address handed out twice")
		Eventually(func() error { return accounted(3) }, 20*time.Second, 200*time.Millisecond).Should(Succeed())

		By("with the pool turned off, nothing of it or of the containers stays")
		cs, err := agent.Client.List(ctx)
		Expect(err).NotTo(HaveOccurred())
		for _, c := range cs {
			Expect(agent.Client.Delete(ctx, c.GUID)).To(Succeed())
		}
		Expect(agent.Stop()).To(Succeed())
		Expect(agent.Reconfigure(func(c *config.Config) { c.Network.PoolSize = 0 })).To(Succeed())
		Expect(agent.Start()).To(Succeed())
		Eventually(func() error { return accounted(0) }, 20*time.Second, 200*time.Millisecond).Should(Succeed())
		inv := inventory()
		Expect(inv.Netns).To(BeEmpty())
		Expect(inv.Veths).To(BeEmpty())
		Expect(inv.IPAM).To(BeEmpty())
		Expect(inv.Rules).To(Equal(baseRules))
	})
})
