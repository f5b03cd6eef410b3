package tenantnet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

func request(logGUID string) executor.RunRequest {
	return executor.RunRequest{
		LogGUID:   logGUID,
		Image:     "preloaded:busybox",
		Resources: &executor.Resources{MemoryMB: 64, DiskMB: 64},
		Process:   executor.Process{Path: "/app/server"},
		Ports:     []uint16{8080},
		Check:     &executor.Check{HTTP: &executor.HTTPCheck{Port: 8080, Path: "/"}},
		StopGrace: executor.Duration(3 * time.Second),
	}
}

// outcome is one row of the table of paths tried.
type outcome struct{ path, want, got string }

var (
	_ = Describe("a hostile tenant", func() { hostileTenant(0) })
	// The same paths tried from namespaces prepared ahead (network.pool_size):
	// a pooled start gets exactly the isolation of one that made its own.
	_ = Describe("a hostile tenant in a pooled namespace", func() { hostileTenant(4) })
)

func hostileTenant(poolSize int) {
	var (
		agent *testagent.Agent
		ctx   = context.Background()
		table []outcome
	)

	BeforeEach(func() {
		table = nil
		var err error
		agent, err = testagent.New(GinkgoT().TempDir(), fmt.Sprintf("tn%d", time.Now().UnixNano()%100000), func(c *config.Config) {
			c.Network.Mode = "bridge"
			c.Network.Name = netName
			c.Network.Bridge = bridge
			c.Network.Subnet = subnet
			c.Network.HostPortRange = "46100-46119"
			c.Network.PoolSize = poolSize
		})
		Expect(err).NotTo(HaveOccurred())
		if os.Getenv("CELLAGENT_TENANTNET_OBSERVE") != "" {
			dropEgressBlock(filepath.Join(agent.Dir, "cellagent.json")) // an agent from before the filter refuses it
		}
		Expect(agent.Start()).To(Succeed())
		DeferCleanup(func() {
			agent.Cleanup()
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Println(agent.LogText())
			}
		})
		if poolSize > 0 {
			// Each spec starts fewer containers than the pool holds: every
			// one of them claims a prepared namespace.
			Eventually(func() int { return len(pooledNetns()) }, 20*time.Second, 100*time.Millisecond).Should(Equal(poolSize))
		}
		makeMetadata()
		makeOutside()
		DeferCleanup(func() {
			GinkgoWriter.Println("path tried | expected | outcome")
			for _, o := range table {
				GinkgoWriter.Printf("%s | %s | %s\n", o.path, o.want, o.got)
			}
		})
	})

	run := func(guid, logGUID string, mod func(*executor.RunRequest)) executor.Container {
		GinkgoHelper()
		req := request(logGUID)
		if mod != nil {
			mod(&req)
		}
		_, err := agent.Client.AllocateAndRun(ctx, guid, req)
		Expect(err).NotTo(HaveOccurred())
		c, err := agent.WaitState(guid, executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		if poolSize > 0 {
			Expect(poolSlotOf(agent, guid)).To(HavePrefix("pool."), "%s's namespace came from the pool", guid)
		}
		return c
	}
	ns := func(guid string) string { return netName + "-" + guid }
	record := func(path string, wantOK, got bool) {
		GinkgoHelper()
		word := map[bool]string{true: "connected", false: "refused"}
		table = append(table, outcome{path, word[wantOK], word[got]})
		if os.Getenv("CELLAGENT_TENANTNET_OBSERVE") != "" {
			return // only fill the table (e.g. against an agent without the filter)
		}
		Expect(got).To(Equal(wantOK), path)
	}

	// Containers on one bridge are kept apart two ways (see the network
	// package): by br_netfilter where it is on, by isolated bridge ports
	// where it is not. Both are tried where the machine has br_netfilter.
	for _, brnf := range []bool{false, true} {
		Context(fmt.Sprintf("with bridge-nf-call-iptables=%v", brnf), func() {
			BeforeEach(func() { setBrNetfilter(brnf) })

			It("reaches nothing but the public internet by default, and nothing reaches it but its host ports", func() {
				a := run("tn-a", "app-a", nil)
				b := run("tn-b", "app-b", nil)

				loop := listen("127.0.0.1:0")
				onBridge := listen(gatewayIP + ":0")
				onDummy := listen(dummyIP + ":0")
				onAll := listen("0.0.0.0:0")

				By("the targets answer from the host, so a refusal is the filter's")
				for _, l := range []*listener{loop, onBridge, onDummy} {
					Expect(dial("", strings.Split(l.l.Addr().String(), ":")[0], l.port())).To(BeTrue())
				}
				Expect(dial("", metaIP, 80)).To(BeTrue())
				controls := map[*listener]int{}
				for _, l := range []*listener{loop, onBridge, onDummy, onAll} {
					controls[l] = len(l.accepted())
				}

				By("container -> host loopback, through route_localnet (an attacker able to route 127/8 out)")
				// A tenant with raw sockets or NET_ADMIN can send to 127.0.0.1
				// through the bridge; the suite gives the netns that route.
				sh("ip", "-n", ns("tn-a"), "addr", "flush", "dev", "lo")
				sh("ip", "-n", ns("tn-a"), "route", "add", "127.0.0.0/8", "via", gatewayIP)
				sh("ip", "netns", "exec", ns("tn-a"), "sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1")
				record("container -> host loopback listener 127.0.0.1", false, dial(ns("tn-a"), "127.0.0.1", loop.port()))
				admin := strings.Split(agent.Config.Listen.Admin, ":")
				record("container -> agent admin API on loopback", false, dial(ns("tn-a"), "127.0.0.1", atoi(admin[len(admin)-1])))

				record("container -> bridge address "+gatewayIP, false, dial(ns("tn-b"), gatewayIP, onBridge.port()))
				record("container -> listener on all host addresses, via the bridge", false, dial(ns("tn-b"), gatewayIP, onAll.port()))
				record("container -> another host address "+dummyIP, false, dial(ns("tn-b"), dummyIP, onDummy.port()))

				record("container -> metadata 169.254.169.254:80", false, dial(ns("tn-b"), metaIP, 80))

				record("container -> other container's app port "+b.InternalIP+":8080", false, dial(ns("tn-a"), b.InternalIP, 8080))
				record("container -> other container, ping", false, ping(ns("tn-a"), b.InternalIP))
				record("outside machine -> container IP "+b.InternalIP+":8080", false, dial(outsideNS, b.InternalIP, 8080))

				for l, n := range controls {
					Expect(l.accepted()).To(HaveLen(n), "only the suite's own checks connected to %s", l.l.Addr())
				}

				out, err := exec.Command("ip", "-6", "addr", "show", "dev", bridge).CombinedOutput()
				Expect(err).NotTo(HaveOccurred())
				record("container -> host over IPv6 (bridge has an IPv6 address)", false, strings.Contains(string(out), "inet6"))

				record("container -> public address "+publicIP+":9000 (default rules)", true, dial(ns("tn-a"), publicIP, 9000))

				By("the host ports and the host's own checks keep working")
				record("host -> container IP:8080 (health checks)", true, dial("", b.InternalIP, 8080))
				record("host -> 127.0.0.1:host_port", true, dial("", "127.0.0.1", int(b.Ports[0].HostPort)))
				record("host -> external_ip:host_port", true, dial("", b.ExternalIP, int(b.Ports[0].HostPort)))
				record("outside machine -> cell:host_port", true, dial(outsideNS, outHostIP, int(b.Ports[0].HostPort)))
				record("container -> external_ip:host_port of another (hairpin)", true, dial(ns("tn-a"), b.ExternalIP, int(b.Ports[0].HostPort)))
				record("container -> external_ip:host_port of itself (hairpin)", true, dial(ns("tn-a"), a.ExternalIP, int(a.Ports[0].HostPort)))
				record("container -> another host address "+dummyIP+":host_port of another (no rule opens that address)", false, dial(ns("tn-a"), dummyIP, int(b.Ports[0].HostPort)))

				By("the denials are counted per guid")
				f := networkFilter(agent.API, "tn-a")
				Expect(f.Denied["egress"]).To(BeNumerically(">", 0))
				Expect(networkFilter(agent.API, "tn-b").Denied["ingress"]).To(BeNumerically(">", 0))
				resp, err := http.Get(agent.API + "/metrics")
				Expect(err).NotTo(HaveOccurred())
				body := readAll(resp)
				Expect(body).To(MatchRegexp(`cellagent_network_denied_total\{direction="egress",guid="tn-a"\} [1-9]`))
				Expect(body).To(MatchRegexp(`cellagent_network_denied_total\{direction="ingress",guid="tn-b"\} [1-9]`))
			})

			It("lets a policy open one port to one source log guid", func() {
				delayPath := "/proc/sys/net/ipv4/neigh/" + bridge + "/proxy_delay"
				if !brnf {
					// The kernel's default, on a bridge kept from an earlier
					// run (a new one starts with it): the starts below set it.
					_ = os.WriteFile(delayPath, []byte("80"), 0o644)
				}
				dst := run("tn-d", "app-d", func(r *executor.RunRequest) {
					r.NetworkPolicies = []executor.NetworkPolicy{{SourceLogGUID: "app-s", Ports: "8080", Protocol: "tcp"}}
				})
				run("tn-s", "app-s", nil)
				run("tn-o", "app-o", nil)
				if !brnf {
					// Routed through the host, each side's first packet waits
					// for the host's proxied ARP reply: at once, not after the
					// kernel's random proxy_delay of up to 0.8 s (a lost
					// delayed request made this dial miss nc's 2 s).
					delay, err := os.ReadFile(delayPath)
					Expect(err).NotTo(HaveOccurred())
					Expect(strings.TrimSpace(string(delay))).To(Equal("0"), "proxy_delay of %s", bridge)
				}
				record("policy source app-s -> destination:8080", true, dial(ns("tn-s"), dst.InternalIP, 8080))
				record("other log guid app-o -> destination:8080", false, dial(ns("tn-o"), dst.InternalIP, 8080))
				record("destination -> policy source (not the policy's direction)", false, dial(ns("tn-d"), mustIP(agent, "tn-s"), 8080))
			})

			It("reaches no other container over IPv6 link-local", func() {
				// The table is IPv4 only, and the app listens on every family.
				// With IPv6 on in the containers, eth0 has an fe80:: address
				// (EUI-64 of its MAC) that another container reaches directly
				// where br_netfilter is on (the ports are not isolated there).
				run("tn-6a", "app-6a", nil)
				run("tn-6b", "app-6b", nil)
				ll := eui64LinkLocal(ns("tn-6b"))
				record("container -> other container's app port over IPv6 link-local "+ll, false, dial(ns("tn-6a"), ll+"%eth0", 8080))
				for _, guid := range []string{"tn-6a", "tn-6b"} {
					out, err := exec.Command("ip", "-n", ns(guid), "-6", "addr", "show").CombinedOutput()
					Expect(err).NotTo(HaveOccurred())
					record("container "+guid+" has an IPv6 address", false, strings.Contains(string(out), "inet6"))
				}
			})
		})
	}

	It("opens exactly what an egress rule names, on a running instance, and a malformed rule changes nothing", func() {
		run("tn-e", "app-e", nil)
		onDummy := listen(dummyIP + ":0")
		other := listen(dummyIP + ":0")
		record("container -> "+dummyIP+" (no rule)", false, dial(ns("tn-e"), dummyIP, onDummy.port()))

		// Lines of earlier runs stay in the kernel log: count new ones.
		deniedMeta := regexp.MustCompile(`cellagent denied egress tn-e .*DST=169\.254\.169\.254 `)
		allowedDummy := regexp.MustCompile(`cellagent allowed tn-e rule \d+ .*DST=` + regexp.QuoteMeta(dummyIP) + ` `)
		deniedBefore, allowedBefore := logLines(deniedMeta), logLines(allowedDummy)

		By("a rule for one address and port, applied without a restart")
		rule := executor.EgressRule{Protocol: "tcp", Destinations: []string{dummyIP}, Ports: fmt.Sprint(onDummy.port()), Log: true}
		code, body := putEgress(agent.API, "tn-e", rulesJSON(rule))
		Expect(code).To(Equal(http.StatusOK), body)
		Eventually(func() bool { return dial(ns("tn-e"), dummyIP, onDummy.port()) }, 10*time.Second, 100*time.Millisecond).Should(BeTrue())
		record("container -> "+dummyIP+":<allowed port> after PUT", true, true)
		record("container -> "+dummyIP+":<other port>", false, dial(ns("tn-e"), dummyIP, other.port()))
		record("container -> "+gatewayIP+":<allowed port> (other address)", false, dial(ns("tn-e"), gatewayIP, onDummy.port()))
		record("container -> "+dummyIP+" ping (other protocol)", false, ping(ns("tn-e"), dummyIP))

		By("cellctl explain answers why: the rules and the denials so far")
		binDir, err := testagent.BinDir()
		Expect(err).NotTo(HaveOccurred())
		out, err := exec.Command(filepath.Join(binDir, "cellctl"), "-api", agent.API, "explain", "tn-e").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(MatchRegexp(`denied so far: [1-9]\d* egress`))
		Expect(string(out)).To(ContainSubstring("always denied: 127.0.0.0/8, 169.254.0.0/16, " + gatewayIP))
		Expect(string(out)).To(ContainSubstring(fmt.Sprintf("egress   tcp  to %s ports %d (logged)", dummyIP, onDummy.port())))
		Expect(string(out)).To(ContainSubstring("default  all  to 0.0.0.0-9.255.255.255"))

		By("a rule cannot open the metadata endpoint")
		code, body = putEgress(agent.API, "tn-e", rulesJSON(rule, executor.EgressRule{Protocol: "all", Destinations: []string{"0.0.0.0/0"}}))
		Expect(code).To(Equal(http.StatusOK), body)
		Eventually(func() bool { return dial(ns("tn-e"), dummyIP, other.port()) }, 10*time.Second, 100*time.Millisecond).Should(BeTrue())
		record("container -> metadata with a 0.0.0.0/0 rule", false, dial(ns("tn-e"), metaIP, 80))
		By("the kernel log names the guid of a denial and of a logged rule")
		Eventually(func() int { return logLines(deniedMeta) }).WithTimeout(10 * time.Second).Should(BeNumerically(">", deniedBefore))
		Eventually(func() int { return logLines(allowedDummy) }).WithTimeout(10 * time.Second).Should(BeNumerically(">", allowedBefore))

		By("a malformed PUT is refused and changes nothing")
		before := networkFilter(agent.API, "tn-e")
		code, body = putEgress(agent.API, "tn-e", `{"egress_rules":[{"protocol":"tcp","destinations":["10.0.0.0/33"],"ports":"80"}]}`)
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(body).To(ContainSubstring("InvalidRequest"))
		Expect(body).To(ContainSubstring(`egress_rules[0].destinations[0]: \"10.0.0.0/33\": not an IPv4 CIDR`))
		after := networkFilter(agent.API, "tn-e")
		Expect(after.EgressRules).To(Equal(before.EgressRules))
		record("container -> "+dummyIP+":<allowed port> after a malformed PUT", true, dial(ns("tn-e"), dummyIP, onDummy.port()))

		By("a bad rule in a run request is refused before anything is reserved")
		req := request("app-x")
		req.EgressRules = []executor.EgressRule{{Protocol: "tcp", Destinations: []string{"1.2.3.9-1.2.3.4"}}}
		_, err = agent.Client.AllocateAndRun(ctx, "tn-x", req)
		Expect(err).To(MatchError(executor.ErrInvalidRequest))
		Expect(err.Error()).To(ContainSubstring("ends before it starts"))
		_, err = agent.Client.Get(ctx, "tn-x")
		Expect(err).To(MatchError(executor.ErrContainerNotFound))
	})

	It("keeps exactly the rules of an adopted container across kill -9", func() {
		run("tn-k", "app-k", func(r *executor.RunRequest) {
			r.EgressRules = []executor.EgressRule{{Protocol: "tcp", Destinations: []string{dummyIP}, Ports: "1-65535"}}
		})
		onDummy := listen(dummyIP + ":0")
		Expect(dial(ns("tn-k"), dummyIP, onDummy.port())).To(BeTrue())
		before := networkFilter(agent.API, "tn-k")
		rulesBefore := rulesOf("tn-k")
		Expect(rulesBefore).To(ContainElement(ContainSubstring("e_tn-k")))
		agent.Kill9()
		Expect(agent.Start()).To(Succeed())
		Expect(rulesOf("tn-k")).To(Equal(rulesBefore), "the adopted container's nftables rules, one by one")
		after := networkFilter(agent.API, "tn-k")
		Expect(after.EgressRules).To(Equal(before.EgressRules))
		Expect(after.DefaultEgress).To(Equal(before.DefaultEgress))
		record("adopted container -> allowed "+dummyIP, true, dial(ns("tn-k"), dummyIP, onDummy.port()))
		record("adopted container -> bridge address", false, dial(ns("tn-k"), gatewayIP, onDummy.port()))
	})
}

// rulesOf lists the table's lines the inventory attributes to guid.
func rulesOf(guid string) []string {
	GinkgoHelper()
	all, err := testagent.NFTContainerRules(netName)
	Expect(err).NotTo(HaveOccurred())
	var out []string
	for r, g := range all {
		if g == guid {
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}

// logLines counts the kernel log lines that match re.
func logLines(re *regexp.Regexp) int {
	out, err := exec.Command("dmesg").Output()
	Expect(err).NotTo(HaveOccurred())
	return len(re.FindAllIndex(out, -1))
}

func mustIP(a *testagent.Agent, guid string) string {
	GinkgoHelper()
	c, err := a.Client.Get(context.Background(), guid)
	Expect(err).NotTo(HaveOccurred())
	return c.InternalIP
}

// pooledNetns lists the namespaces the agent holds prepared.
func pooledNetns() []string {
	var names []string
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), netName+"-pool.") {
			names = append(names, e.Name())
		}
	}
	return names
}

// poolSlotOf reads the pooled namespace guid's network state names ("" for
// one made for it).
func poolSlotOf(a *testagent.Agent, guid string) string {
	GinkgoHelper()
	b, err := os.ReadFile(filepath.Join(a.Config.DataDir, "network", "containers", guid+".json"))
	Expect(err).NotTo(HaveOccurred())
	var st struct {
		PoolSlot string `json:"pool_slot"`
	}
	Expect(json.Unmarshal(b, &st)).To(Succeed())
	return st.PoolSlot
}
