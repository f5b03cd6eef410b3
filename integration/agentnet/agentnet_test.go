package agentnet_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

func request() executor.RunRequest {
	return executor.RunRequest{
		Image:     "preloaded:busybox",
		Resources: &executor.Resources{MemoryMB: 64, DiskMB: 64},
		Process:   executor.Process{Path: "/app/server"},
		Ports:     []uint16{8080},
		Check:     &executor.Check{HTTP: &executor.HTTPCheck{Port: 8080, Path: "/"}},
		StopGrace: executor.Duration(3 * time.Second),
	}
}

func get(url string) (string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// inventory is what exists on the host for a network: nat rules (the
// agent's nftables forwards, any iptables rule of the network), netns
// names and IPAM files.
type inventory struct {
	rules []string
	netns []string
	ipam  []string
}

func takeInventory(name, dataDir string) inventory {
	var inv inventory
	// Only this network's rules: other agents may share the host.
	rules, err := testagent.NetworkRules(name, "10.254.100.0/24")
	Expect(err).NotTo(HaveOccurred())
	for r := range rules {
		inv.rules = append(inv.rules, r)
	}
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), name+"-") {
			inv.netns = append(inv.netns, e.Name())
		}
	}
	ipamDir := filepath.Join(dataDir, "network", "ipam")
	_ = filepath.Walk(ipamDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && !strings.HasPrefix(info.Name(), "last_reserved_ip") && info.Name() != "lock" {
			inv.ipam = append(inv.ipam, p)
		}
		return nil
	})
	sort.Strings(inv.rules)
	return inv
}

var _ = Describe("bridge networking through the agent", func() {
	var (
		agent *testagent.Agent
		ctx   = context.Background()
	)

	start := func(modify func(*config.Config)) {
		var err error
		agent, err = testagent.New(GinkgoT().TempDir(), fmt.Sprintf("net%d", time.Now().UnixNano()%100000), func(c *config.Config) {
			c.Network.Mode = "bridge"
			c.Network.Name = "cellagentan"
			c.Network.Bridge = "cellagentan0"
			c.Network.Subnet = "10.254.100.0/24"
			c.Network.HostPortRange = "46000-46009"
			if modify != nil {
				modify(c)
			}
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(agent.Start()).To(Succeed())
		DeferCleanup(func() {
			agent.Cleanup()
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Println(agent.LogText())
			}
		})
	}

	It("gives instances their own IPs, reachable on external_ip and loopback host ports, and delete frees everything", func() {
		start(nil)
		before := takeInventory("cellagentan", agent.Config.DataDir)
		var ips []string
		for _, g := range []string{"n-1", "n-2"} {
			_, err := agent.Client.AllocateAndRun(ctx, g, request())
			Expect(err).NotTo(HaveOccurred())
		}
		for _, g := range []string{"n-1", "n-2"} {
			c, err := agent.WaitState(g, executor.StateRunning, 30*time.Second)
			Expect(err).NotTo(HaveOccurred())
			Expect(c.InternalIP).To(HavePrefix("10.254.100."))
			Expect(c.ExternalIP).NotTo(BeEmpty())
			Expect(c.Ports).To(HaveLen(1))
			Expect(c.Ports[0].ContainerPort).To(Equal(uint16(8080)))
			Expect(c.Ports[0].HostPort).To(BeNumerically(">=", 46000))
			ips = append(ips, c.InternalIP)
			for _, host := range []string{c.ExternalIP, "127.0.0.1"} {
				Expect(get(fmt.Sprintf("http://%s:%d/", host, c.Ports[0].HostPort))).To(ContainSubstring("hello from " + g))
			}
			env, err := get(fmt.Sprintf("http://%s:%d/env", c.InternalIP, 8080))
			Expect(err).NotTo(HaveOccurred())
			Expect(env).To(ContainSubstring("CF_INSTANCE_INTERNAL_IP=" + c.InternalIP))
			Expect(env).To(ContainSubstring(fmt.Sprintf("CF_INSTANCE_PORT=%d", c.Ports[0].HostPort)))
		}
		Expect(ips[0]).NotTo(Equal(ips[1]))
		during := takeInventory("cellagentan", agent.Config.DataDir)
		Expect(during.netns).To(HaveLen(2))
		Expect(len(during.rules)).To(BeNumerically(">", len(before.rules)))

		for _, g := range []string{"n-1", "n-2"} {
			Expect(agent.Client.Delete(ctx, g)).To(Succeed())
		}
		after := takeInventory("cellagentan", agent.Config.DataDir)
		Expect(after.netns).To(BeEmpty())
		Expect(after.ipam).To(BeEmpty())
		Expect(after.rules).To(Equal(before.rules))
	})

	It("holds readiness back while nothing listens in the container's namespace, and starts the instance once the app listens", func() {
		start(nil)
		By("an app that listens: running, the listen probe opened in its namespace")
		_, err := agent.Client.AllocateAndRun(ctx, "lp-1", request())
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("lp-1", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(agent.LogText()).NotTo(ContainSubstring("listen-probe-unavailable"))

		By("a check on a port nothing listens on: the start timeout names the probe's answer")
		req := request()
		req.Ports = []uint16{8080, 8081}
		req.Check = &executor.Check{TCP: &executor.TCPCheck{Port: 8081}}
		req.StartTimeout = executor.Duration(2 * time.Second)
		_, err = agent.Client.AllocateAndRun(ctx, "lp-2", req)
		Expect(err).NotTo(HaveOccurred())
		c, err := agent.WaitState("lp-2", executor.StateCompleted, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.RunResult.FailureReason).To(HavePrefix("start timeout"))
		Expect(c.RunResult.FailureReason).To(ContainSubstring("nothing listens on port 8081 yet"))
	})

	It("quarantines released host ports and reports exhaustion as InsufficientResources", func() {
		start(func(c *config.Config) {
			c.Network.HostPortRange = "46010-46011"
			c.Network.PortQuarantine = executor.Duration(4 * time.Second)
		})
		_, err := agent.Client.AllocateAndRun(ctx, "q-1", request())
		Expect(err).NotTo(HaveOccurred())
		c1, err := agent.WaitState("q-1", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.Client.AllocateAndRun(ctx, "q-2", request())
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("q-2", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())

		By("the range is full")
		_, err = agent.Client.AllocateAndRun(ctx, "q-3", request())
		Expect(err).To(MatchError(executor.ErrInsufficientResources))
		Expect(err.Error()).To(ContainSubstring("host ports"))

		By("a released port is not handed out during the quarantine")
		Expect(agent.Client.Delete(ctx, "q-1")).To(Succeed())
		_, err = agent.Client.AllocateAndRun(ctx, "q-3", request())
		Expect(err).To(MatchError(executor.ErrInsufficientResources))
		Expect(err.Error()).To(ContainSubstring("1 in quarantine"))

		By("after the quarantine it is")
		Eventually(func() error {
			_, err := agent.Client.AllocateAndRun(ctx, "q-3", request())
			return err
		}, 15*time.Second, 250*time.Millisecond).Should(Succeed())
		c3, err := agent.WaitState("q-3", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(c3.Ports[0].HostPort).To(Equal(c1.Ports[0].HostPort))
	})

	It("keeps running containers reachable across kill -9 and removes leftovers of vanished ones", func() {
		start(nil)
		before := takeInventory("cellagentan", agent.Config.DataDir)
		for _, g := range []string{"k-1", "k-2"} {
			_, err := agent.Client.AllocateAndRun(ctx, g, request())
			Expect(err).NotTo(HaveOccurred())
		}
		c1, err := agent.WaitState("k-1", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("k-2", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())

		agent.Kill9()
		By("k-2 vanishes while the agent is down (its record is lost)")
		Expect(os.Remove(filepath.Join(agent.Config.DataDir, "containers", "k-2.json"))).To(Succeed())
		Expect(agent.Start()).To(Succeed())

		c, err := agent.Client.Get(ctx, "k-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(c.InternalIP).To(Equal(c1.InternalIP))
		Expect(c.Ports).To(Equal(c1.Ports))
		Expect(get(fmt.Sprintf("http://127.0.0.1:%d/", c.Ports[0].HostPort))).To(ContainSubstring("hello from k-1"))
		inv := takeInventory("cellagentan", agent.Config.DataDir)
		Expect(inv.netns).To(Equal([]string{"cellagentan-k-1"}))
		Expect(inv.ipam).To(HaveLen(1))

		Expect(agent.Client.Delete(ctx, "k-1")).To(Succeed())
		after := takeInventory("cellagentan", agent.Config.DataDir)
		Expect(after.netns).To(BeEmpty())
		Expect(after.rules).To(Equal(before.rules))
	})
})
