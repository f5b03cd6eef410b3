package network_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/tedsuo/ifrit"

	"github.com/cellagent/cellagent/containerstore/network"
	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("bridge mode", func() {
	var (
		ctx        context.Context
		logger     *lagertest.TestLogger
		dataDir    string
		quarantine time.Duration
		cfg        network.Config
		manager    *network.Manager
		before     hostState
		beforeN    int
		externalIP net.IP
	)

	newManager := func() *network.Manager {
		m, err := network.New(logger, cfg)
		Expect(err).NotTo(HaveOccurred())
		return m
	}

	// expectHostClean checks that nothing of the test's containers is left.
	expectHostClean := func() {
		GinkgoHelper()
		Expect(snapshot(dataDir)).To(Equal(before))
		Expect(ruleLineCount()).To(Equal(beforeN))
	}

	answers := func(addr, body string) {
		GinkgoHelper()
		Eventually(func() (string, error) { return get(addr) }).
			WithTimeout(10 * time.Second).WithPolling(100 * time.Millisecond).Should(Equal(body))
	}

	BeforeEach(func() {
		ctx = context.Background()
		logger = lagertest.NewTestLogger("network")
		dataDir = GinkgoT().TempDir()
		quarantine = 0
		externalIP = network.DefaultExternalIP()
	})

	JustBeforeEach(func() {
		cfg = testConfig(dataDir, quarantine)
		before = snapshot(dataDir)
		beforeN = ruleLineCount()
		manager = newManager()
		DeferCleanup(func() {
			// Whatever a failing test left, removed through the package itself.
			m, err := network.New(logger, cfg)
			Expect(err).NotTo(HaveOccurred())
			Expect(m.CleanupOrphans(ctx, logger, func(string) bool { return false })).To(Succeed())
			// and its pool, slots waiting out a delay included: a
			// recovery with pool size 0 destroys every slot (CNI DEL).
			drained := cfg
			drained.PoolSize = 0
			m, err = network.New(logger, drained)
			Expect(err).NotTo(HaveOccurred())
			runner := ifrit.Invoke(m.PoolRunner(logger))
			runner.Signal(os.Interrupt)
			Eventually(runner.Wait()).Should(Receive(BeNil()))
			ready, _ := m.PoolStats()
			Expect(ready).To(BeZero())
			sweepNetNS(ctx)
		})
	})

	It("keeps the bridge's MAC whatever ports come and go, and gives each container its own veth on it", func() {
		// A bridge whose MAC was never set takes its lowest port's: a
		// namespace that kept the gateway's old MAC (a pooled one given
		// back) sent into nothing until its neighbour entry was probed.
		Expect(mustRun("cat", "/sys/class/net/"+bridgeName+"/addr_assign_type")).To(HavePrefix("3"), "NET_ADDR_SET")
		before := mustRun("cat", "/sys/class/net/"+bridgeName+"/address")
		_, err := manager.Setup(ctx, logger, "app-a", []uint16{8080})
		Expect(err).NotTo(HaveOccurred())
		Expect(mustRun("cat", "/sys/class/net/"+bridgeName+"/address")).To(Equal(before))
		Expect(mustRun("ip", "-n", "cellagentit-app-a", "-o", "link", "show", "eth0")).To(MatchRegexp(`eth0@if[0-9]+: <[^>]*\bUP\b`))
		Expect(mustRun("ip", "-o", "link", "show", "master", bridgeName)).To(MatchRegexp(`link-netns cellagentit-app-a`))
		Expect(manager.Teardown(ctx, logger, "app-a")).To(Succeed())
	})

	It("gives two containers their own IPs, reachable on the external IP and loopback, and leaves nothing on teardown", func() {
		a, err := manager.Setup(ctx, logger, "app-a", []uint16{8080})
		Expect(err).NotTo(HaveOccurred())
		b, err := manager.Setup(ctx, logger, "app-b", []uint16{8080})
		Expect(err).NotTo(HaveOccurred())

		_, ipnet, _ := net.ParseCIDR(subnet)
		Expect(ipnet.Contains(a.IPv4)).To(BeTrue(), "%s in %s", a.IPv4, subnet)
		Expect(ipnet.Contains(b.IPv4)).To(BeTrue())
		Expect(a.IPv4.Equal(b.IPv4)).To(BeFalse())
		Expect(a.Ports[0].HostPort).NotTo(Equal(b.Ports[0].HostPort))
		Expect(a.NetNSPath).To(Equal("/var/run/netns/cellagentit-app-a"))
		Expect(mustRun("ip", "netns", "list")).To(And(ContainSubstring("cellagentit-app-a"), ContainSubstring("cellagentit-app-b")))
		Expect(a.ExternalIP.Equal(externalIP)).To(BeTrue())

		By("each namespace has its loopback up and IPv6 off (set in-process after CNI ADD)")
		for _, ns := range []string{"cellagentit-app-a", "cellagentit-app-b"} {
			Expect(mustRun("ip", "-n", ns, "-o", "link", "show", "lo")).To(MatchRegexp(`<[^>]*\bUP\b[^>]*>`), ns)
			Expect(mustRun("ip", "-n", ns, "-o", "addr", "show", "lo")).To(ContainSubstring("inet 127.0.0.1/8"), ns)
			for _, key := range []string{"all", "default", "eth0"} {
				Expect(mustRun("ip", "netns", "exec", ns, "cat", "/proc/sys/net/ipv6/conf/"+key+"/disable_ipv6")).To(HavePrefix("1"), ns+" "+key)
			}
			Expect(mustRun("ip", "-n", ns, "-o", "addr", "show")).NotTo(ContainSubstring("inet6"), ns)
		}
		own, err := os.Readlink("/proc/self/ns/net")
		Expect(err).NotTo(HaveOccurred())
		tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
		Expect(err).NotTo(HaveOccurred())
		for _, t := range tasks {
			if ns, err := os.Readlink(t); err == nil { // a thread may end meanwhile
				Expect(ns).To(Equal(own), "every thread of the process that made the namespaces is back in its own: %s", t)
			}
		}

		startHTTPD("cellagentit-app-a", 8080, "I am a")
		startHTTPD("cellagentit-app-b", 8080, "I am b")
		for _, c := range []struct {
			res  network.Result
			body string
		}{{a, "I am a"}, {b, "I am b"}} {
			answers(hostPort(c.res.IPv4, 8080), c.body) // what a readiness check dials
			answers(hostPort(externalIP, c.res.Ports[0].HostPort), c.body)
			answers(hostPort(net.IPv4(127, 0, 0, 1), c.res.Ports[0].HostPort), c.body)
		}

		By("a container reaches another's and its own host port on the external IP (hairpin)")
		for _, c := range []struct {
			port uint16
			body string
		}{{b.Ports[0].HostPort, "I am b"}, {a.Ports[0].HostPort, "I am a"}} {
			Eventually(func() (string, error) {
				out, err := exec.Command("ip", "netns", "exec", "cellagentit-app-a", "busybox", "sh", "-c",
					fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | busybox nc -w 2 %s %d`, externalIP, c.port)).CombinedOutput()
				return string(out), err
			}).WithTimeout(5 * time.Second).WithPolling(200 * time.Millisecond).Should(ContainSubstring(c.body))
		}

		stopProcesses("cellagentit-app-a")
		stopProcesses("cellagentit-app-b")
		Expect(manager.Teardown(ctx, logger, "app-a")).To(Succeed())
		Expect(manager.Teardown(ctx, logger, "app-b")).To(Succeed())
		expectHostClean()
		Expect(mustRun("ip", "netns", "list")).NotTo(ContainSubstring("cellagentit-app-"))

		By("tearing down again")
		Expect(manager.Teardown(ctx, logger, "app-a")).To(Succeed())
		expectHostClean()
	})

	It("masquerades the containers' outbound traffic", func() {
		// An "outside" host in a namespace of its own, reached through the
		// host's routing: it sees the host's address, not the container's.
		const outside = "cellagentitout"
		mustRun("ip", "netns", "add", outside)
		DeferCleanup(func() { _ = exec.Command("ip", "netns", "delete", outside).Run() })
		mustRun("ip", "link", "add", "cait-h", "type", "veth", "peer", "name", "cait-o", "netns", outside)
		mustRun("ip", "addr", "add", "10.254.201.1/30", "dev", "cait-h")
		mustRun("ip", "link", "set", "cait-h", "up")
		mustRun("ip", "-n", outside, "addr", "add", "10.254.201.2/30", "dev", "cait-o")
		mustRun("ip", "-n", outside, "link", "set", "cait-o", "up")
		cgi := GinkgoT().TempDir()
		Expect(os.MkdirAll(filepath.Join(cgi, "cgi-bin"), 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(cgi, "cgi-bin", "addr"),
			[]byte("#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n"), 0o755)).To(Succeed())
		startProcess("ip", "netns", "exec", outside, "busybox", "httpd", "-f", "-p", "8000", "-h", cgi)

		// The outside host is on a private address: the default egress
		// rules (public internet only) need a rule for it.
		res, err := manager.SetupFiltered(ctx, logger, "app-out", nil, network.FilterSpec{Egress: []executor.EgressRule{
			{Protocol: "tcp", Destinations: []string{"10.254.201.2"}, Ports: "8000"}}})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() (string, error) {
			// busybox-static's wget crashes on Debian 12; nc does not.
			out, err := exec.Command("ip", "netns", "exec", "cellagentit-app-out", "busybox", "sh", "-c",
				`printf 'GET /cgi-bin/addr HTTP/1.0\r\n\r\n' | busybox nc -w 2 10.254.201.2 8000`).CombinedOutput()
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			return strings.TrimSpace(lines[len(lines)-1]), err
		}).WithTimeout(10*time.Second).WithPolling(200*time.Millisecond).Should(Or(Equal("10.254.201.1"), Equal("[::ffff:10.254.201.1]")), "busybox httpd may give the v4-mapped form")
		Expect(res.IPv4.String()).NotTo(Equal("10.254.201.1"))

		Expect(manager.Teardown(ctx, logger, "app-out")).To(Succeed())
		expectHostClean()
	})

	It("frees IPAM and every iptables rule when the netns is already gone", func() {
		_, err := manager.Setup(ctx, logger, "app-gone", []uint16{8080, 9090})
		Expect(err).NotTo(HaveOccurred())
		mustRun("ip", "netns", "delete", "cellagentit-app-gone")
		Expect(manager.Teardown(ctx, logger, "app-gone")).To(Succeed())
		expectHostClean()
	})

	It("sets up 10 containers at once", func() {
		var wg sync.WaitGroup
		results := make([]network.Result, 10)
		errs := make([]error, 10)
		for i := range 10 {
			wg.Go(func() {
				results[i], errs[i] = manager.Setup(ctx, logger, fmt.Sprintf("par-%d", i), []uint16{8080})
			})
		}
		wg.Wait()
		ips := map[string]bool{}
		for i := range 10 {
			Expect(errs[i]).NotTo(HaveOccurred())
			ips[results[i].IPv4.String()] = true
		}
		Expect(ips).To(HaveLen(10))
		for i := range 10 {
			wg.Go(func() { errs[i] = manager.Teardown(ctx, logger, fmt.Sprintf("par-%d", i)) })
		}
		wg.Wait()
		for i := range 10 {
			Expect(errs[i]).NotTo(HaveOccurred())
		}
		expectHostClean()
	})

	Context("when CNI ADD fails half way (bridge made, no address left)", func() {
		JustBeforeEach(func() {
			// A /29 on a bridge of its own: host-local has 5 addresses.
			cfg.Subnet = "10.254.202.0/29"
			cfg.BridgeName = "cellagentit1"
			DeferCleanup(func() { _ = exec.Command("ip", "link", "delete", "cellagentit1").Run() })
			manager = newManager()
		})

		It("rolls back everything it made and frees the ports at once", func() {
			for i := range 5 {
				_, err := manager.Setup(ctx, logger, fmt.Sprintf("full-%d", i), []uint16{8080})
				Expect(err).NotTo(HaveOccurred())
			}
			full := snapshot(dataDir)
			inUse, _ := manager.PortAllocator().Stats()

			_, err := manager.Setup(ctx, logger, "one-too-many", []uint16{8080})
			Expect(err).To(MatchError(ContainSubstring("cni add one-too-many")))
			Expect(snapshot(dataDir)).To(Equal(full))
			Expect(filepath.Join(dataDir, "network", "containers", "one-too-many.json")).NotTo(BeAnExistingFile())
			inUseAfter, quarantined := manager.PortAllocator().Stats()
			Expect([]int{inUseAfter, quarantined}).To(Equal([]int{inUse, 0}))

			for i := range 5 {
				Expect(manager.Teardown(ctx, logger, fmt.Sprintf("full-%d", i))).To(Succeed())
			}
			Expect(snapshot(dataDir)).To(Equal(before))
			Expect(listDir("/sys/class/net/cellagentit1/brif")).To(BeEmpty(), "no veth left on the bridge")
		})
	})

	Context("with a one-port range", func() {
		JustBeforeEach(func() {
			cfg.HostPortRange = "45100-45100"
			manager = newManager()
		})

		Context("and a 2s quarantine", func() {
			BeforeEach(func() { quarantine = 2 * time.Second })

			It("does not hand a released port out again until the quarantine is over", func() {
				first, err := manager.Setup(ctx, logger, "q-1", []uint16{8080})
				Expect(err).NotTo(HaveOccurred())
				Expect(manager.Teardown(ctx, logger, "q-1")).To(Succeed())

				_, err = manager.Setup(ctx, logger, "q-2", []uint16{8080})
				Expect(err).To(MatchError(network.ErrInsufficientPorts))
				Expect(err).To(MatchError(ContainSubstring("no free host ports in 45100-45100 for 1 more (0 in use, 1 in quarantine)")))

				var second network.Result
				Eventually(func() error {
					second, err = manager.Setup(ctx, logger, "q-2", []uint16{8080})
					return err
				}).WithTimeout(10 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
				Expect(second.Ports[0].HostPort).To(Equal(first.Ports[0].HostPort))
				Expect(manager.Teardown(ctx, logger, "q-2")).To(Succeed())
				expectHostClean()
			})
		})

		It("fails when the range is exhausted and reuses at once without quarantine", func() {
			_, err := manager.Setup(ctx, logger, "x-1", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			_, err = manager.Setup(ctx, logger, "x-2", []uint16{8080})
			Expect(err).To(MatchError(network.ErrInsufficientPorts))
			Expect(err).To(MatchError(ContainSubstring("(1 in use, 0 in quarantine)")))
			Expect(snapshot(dataDir).NetNS).To(Equal([]string{"cellagentit-x-1"}), "the failed Setup made nothing")

			Expect(manager.Teardown(ctx, logger, "x-1")).To(Succeed())
			res, err := manager.Setup(ctx, logger, "x-2", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Ports[0].HostPort).To(Equal(uint16(45100)))
			Expect(manager.Teardown(ctx, logger, "x-2")).To(Succeed())
			expectHostClean()
		})
	})

	It("pins each container's address to its MAC on the bridge (no ARP) until teardown, and again on restore", func() {
		a, err := manager.Setup(ctx, logger, "pinned", []uint16{8080})
		Expect(err).NotTo(HaveOccurred())
		neigh := func() string {
			return strings.TrimSpace(mustRun("ip", "-4", "neigh", "show", a.IPv4.String(), "dev", cfg.BridgeName))
		}
		link := mustRun("ip", "-n", "cellagentit-pinned", "-o", "link", "show", "eth0")
		f := strings.Fields(link[strings.Index(link, "link/ether"):])
		mac := f[1]
		Expect(neigh()).To(Equal(a.IPv4.String() + " lladdr " + mac + " PERMANENT"))
		startHTTPD("cellagentit-pinned", 8080, "pinned")
		answers(hostPort(a.IPv4, 8080), "pinned")

		By("restoring after the entry was lost")
		mustRun("ip", "neigh", "del", a.IPv4.String(), "dev", cfg.BridgeName)
		Expect(neigh()).NotTo(ContainSubstring("PERMANENT"))
		_, err = newManager().Restore(logger, "pinned")
		Expect(err).NotTo(HaveOccurred())
		Expect(neigh()).To(Equal(a.IPv4.String() + " lladdr " + mac + " PERMANENT"))
		answers(hostPort(a.IPv4, 8080), "pinned")

		stopProcesses("cellagentit-pinned")
		Expect(manager.Teardown(ctx, logger, "pinned")).To(Succeed())
		Expect(neigh()).To(BeEmpty())
		expectHostClean()
	})

	It("gives a clean pooled namespace back on teardown, forgetting the address's flows, and destroys one with something left", func() {
		// A pool of 3, filled, then its refill stopped: the teardowns
		// below find room, and nothing refills behind the test's back.
		cfg.PoolSize = 3
		manager = newManager()
		runner := ifrit.Invoke(manager.PoolRunner(logger))
		Eventually(func() int { r, _ := manager.PoolStats(); return r }).WithTimeout(30 * time.Second).Should(Equal(3))
		runner.Signal(os.Interrupt)
		Eventually(runner.Wait()).Should(Receive(BeNil()))

		inode := func(name string) uint64 {
			GinkgoHelper()
			fi, err := os.Stat("/var/run/netns/" + name)
			Expect(err).NotTo(HaveOccurred())
			return fi.Sys().(*syscall.Stat_t).Ino
		}
		flows := func(ip net.IP) []string {
			b, err := os.ReadFile("/proc/net/nf_conntrack")
			Expect(err).NotTo(HaveOccurred())
			var out []string
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "="+ip.String()+" ") {
					out = append(out, l)
				}
			}
			return out
		}
		leased := func(ip net.IP) bool {
			_, err := os.Stat(filepath.Join(dataDir, "network", "ipam", netName, ip.String()))
			return err == nil
		}

		a, err := manager.Setup(ctx, logger, "app-a", []uint16{8080})
		Expect(err).NotTo(HaveOccurred())
		b, err := manager.Setup(ctx, logger, "app-b", []uint16{8080})
		Expect(err).NotTo(HaveOccurred())
		aIno := inode("cellagentit-app-a")

		By("a: the host sent it UDP (a conntrack entry), nothing of it is left: returned")
		conn, err := net.Dial("udp", hostPort(a.IPv4, 9999))
		Expect(err).NotTo(HaveOccurred())
		_, err = conn.Write([]byte("x"))
		Expect(err).NotTo(HaveOccurred())
		conn.Close()
		Eventually(func() []string { return flows(a.IPv4) }).ShouldNot(BeEmpty(), "the host tracks the flow")
		Expect(manager.TeardownStopped(ctx, logger, "app-a")).To(Succeed())
		Expect(flows(a.IPv4)).To(BeEmpty(), "the host forgot the address's flows")
		Expect(containerRules("app-a")).To(BeEmpty())
		Expect(mustRun("ip", "-4", "neigh", "show", a.IPv4.String(), "dev", cfg.BridgeName)).NotTo(ContainSubstring("PERMANENT"))
		Expect(mustRun("ip", "netns", "list")).NotTo(ContainSubstring("cellagentit-app-a"))
		Expect(leased(a.IPv4)).To(BeTrue(), "the address stays with the pooled namespace")
		Expect(logger).To(gbytes.Say(`torn-down.*"returned-to-pool":"pool\.`))
		r, _ := manager.PoolStats()
		Expect(r).To(Equal(2))

		By("b: a process is still in it: destroyed")
		startProcess("ip", "netns", "exec", "cellagentit-app-b", "sleep", "60")
		Eventually(func() string {
			out, _ := exec.Command("ip", "netns", "pids", "cellagentit-app-b").Output()
			return string(out)
		}).ShouldNot(BeEmpty())
		Expect(manager.TeardownStopped(ctx, logger, "app-b")).To(Succeed())
		Expect(logger).To(gbytes.Say(`not-returned-to-pool.*process [0-9]+ is in it`))
		Expect(leased(b.IPv4)).To(BeFalse(), "CNI DEL freed it")
		r, _ = manager.PoolStats()
		Expect(r).To(Equal(2))

		By("the pool hands out its oldest slots first, then a's namespace, as prepared")
		var c network.Result
		for i := range 2 {
			c, err = manager.Setup(ctx, logger, fmt.Sprintf("app-c%d", i), []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(c.IPv4.Equal(a.IPv4)).To(BeTrue(), "%s, not a's %s", c.IPv4, a.IPv4)
		Expect(inode("cellagentit-app-c1")).To(Equal(aIno), "the same namespace")
		Expect(mustRun("ip", "-n", "cellagentit-app-c1", "-o", "link", "show", "lo")).To(MatchRegexp(`<[^>]*\bUP\b[^>]*>`))
		Expect(mustRun("ip", "netns", "exec", "cellagentit-app-c1", "cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6")).To(HavePrefix("1"))
		Expect(containerRules("app-c1")).NotTo(BeEmpty(), "its own filter")
		startHTTPD("cellagentit-app-c1", 8080, "I am c1")
		answers(hostPort(externalIP, c.Ports[0].HostPort), "I am c1")

		By("c1: it closed a connection on port 8080 first, leaving TIME_WAIT there: returned, handed out only once the kernel ended it")
		stopProcesses("cellagentit-app-c1")
		closeFirstIn("cellagentit-app-c1", c.IPv4, 8080)
		Expect(manager.TeardownStopped(ctx, logger, "app-c1")).To(Succeed())
		Expect(logger).To(gbytes.Say(`time-wait-left.*tcp socket [0-9A-F]{8}:1F90 state 06`))
		Expect(logger).To(gbytes.Say(`torn-down.*"returned-to-pool":"pool\.`))
		Expect(leased(a.IPv4)).To(BeTrue(), "the address stays with the pooled namespace")
		d, err := manager.Setup(ctx, logger, "app-d", []uint16{8080})
		Expect(err).NotTo(HaveOccurred())
		Expect(d.IPv4.Equal(a.IPv4)).To(BeFalse(), "not handed out while its TIME_WAIT lasts")

		By("d: made at a miss (no slot claimable), under a slot ID of its own: returned, and claimed as prepared")
		Expect(logger).To(gbytes.Say(`set-up.*"container-guid":"app-d".*"from-pool":false.*"pool-slot":"pool\.`))
		dIno := inode("cellagentit-app-d")
		Expect(manager.TeardownStopped(ctx, logger, "app-d")).To(Succeed())
		Expect(logger).To(gbytes.Say(`torn-down.*"returned-to-pool":"pool\.`))
		Expect(leased(d.IPv4)).To(BeTrue(), "the address stays with the pooled namespace")
		e, err := manager.Setup(ctx, logger, "app-e", []uint16{8080})
		Expect(err).NotTo(HaveOccurred())
		Expect(e.IPv4.Equal(d.IPv4)).To(BeTrue(), "%s, not d's %s", e.IPv4, d.IPv4)
		Expect(inode("cellagentit-app-e")).To(Equal(dIno), "the same namespace")
		Expect(mustRun("ip", "netns", "exec", "cellagentit-app-e", "cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6")).To(HavePrefix("1"))
		startHTTPD("cellagentit-app-e", 8080, "I am e")
		answers(hostPort(externalIP, e.Ports[0].HostPort), "I am e")
		stopProcesses("cellagentit-app-e")
		Expect(manager.Teardown(ctx, logger, "app-e")).To(Succeed())
		Expect(manager.Teardown(ctx, logger, "app-c0")).To(Succeed())
	})

	Describe("agent restart", func() {
		It("re-applies what the table lost and sends nothing for what it holds", func() {
			kept, err := manager.Setup(ctx, logger, "keep-me", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			startHTTPD("cellagentit-keep-me", 8080, "still here")
			answers(hostPort(net.IPv4(127, 0, 0, 1), kept.Ports[0].HostPort), "still here")
			rules := containerRules("keep-me")
			Expect(rules).To(ContainElements(ContainSubstring("c_keep-me"), ContainSubstring("e_keep-me"), ContainSubstring("i_keep-me")))
			reapplied := func() int {
				n := 0
				for _, m := range logger.LogMessages() {
					if strings.HasSuffix(m, ".restore.reapplied") {
						n++
					}
				}
				return n
			}

			By("restarting with the table intact: nothing to re-apply")
			_, err = newManager().Restore(logger, "keep-me")
			Expect(err).NotTo(HaveOccurred())
			Expect(reapplied()).To(Equal(0))
			Expect(containerRules("keep-me")).To(Equal(rules))
			answers(hostPort(net.IPv4(127, 0, 0, 1), kept.Ports[0].HostPort), "still here")

			By("restarting after the table was deleted (nft flush ruleset, a reloaded nftables.service)")
			mustRun("nft", "delete", "table", "ip", nftTable)
			Expect(containerRules("keep-me")).To(BeEmpty())
			_, err = newManager().Restore(logger, "keep-me")
			Expect(err).NotTo(HaveOccurred())
			Expect(reapplied()).To(Equal(1))
			Expect(containerRules("keep-me")).To(Equal(rules), "the same forwards and filter, marks included")
			answers(hostPort(net.IPv4(127, 0, 0, 1), kept.Ports[0].HostPort), "still here")
			answers(hostPort(externalIP, kept.Ports[0].HostPort), "still here")

			By("restarting once more: the re-applied batches carry their marks")
			_, err = newManager().Restore(logger, "keep-me")
			Expect(err).NotTo(HaveOccurred())
			Expect(reapplied()).To(Equal(1))

			stopProcesses("cellagentit-keep-me")
			Expect(manager.Teardown(ctx, logger, "keep-me")).To(Succeed())
			expectHostClean()
		})

		It("restores running containers and cleans up the orphans", func() {
			kept, err := manager.Setup(ctx, logger, "keep-me", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			orphan, err := manager.Setup(ctx, logger, "orphan", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			startHTTPD("cellagentit-keep-me", 8080, "still here")
			answers(hostPort(net.IPv4(127, 0, 0, 1), kept.Ports[0].HostPort), "still here")

			By("starting a new manager on the same data dir, as after kill -9")
			restarted := newManager()
			res, err := restarted.Restore(logger, "keep-me")
			Expect(err).NotTo(HaveOccurred())
			Expect(res).To(Equal(kept))
			answers(hostPort(net.IPv4(127, 0, 0, 1), res.Ports[0].HostPort), "still here")
			answers(hostPort(externalIP, res.Ports[0].HostPort), "still here")

			Expect(restarted.CleanupOrphans(ctx, logger, func(guid string) bool { return guid == "keep-me" })).To(Succeed())
			s := snapshot(dataDir)
			Expect(s.NetNS).To(Equal([]string{"cellagentit-keep-me"}))
			Expect(s.Leases).To(Equal([]string{kept.IPv4.String()}))
			Expect(filepath.Join(dataDir, "network", "containers", "orphan.json")).NotTo(BeAnExistingFile())
			Expect(strings.Join(s.Rules, "\n")).NotTo(ContainSubstring(fmt.Sprint(orphan.Ports[0].HostPort)))
			Expect(strings.Join(s.Rules, "\n")).NotTo(ContainSubstring(orphan.IPv4.String()+":"), "no forward to the orphan's address")
			answers(hostPort(net.IPv4(127, 0, 0, 1), res.Ports[0].HostPort), "still here")

			By("not handing out the kept container's port")
			fresh, err := restarted.Setup(ctx, logger, "fresh", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			Expect(fresh.Ports[0].HostPort).NotTo(Equal(kept.Ports[0].HostPort))
			Expect(fresh.Ports[0].HostPort).NotTo(Equal(orphan.Ports[0].HostPort))

			stopProcesses("cellagentit-keep-me")
			Expect(restarted.Teardown(ctx, logger, "keep-me")).To(Succeed())
			Expect(restarted.Teardown(ctx, logger, "fresh")).To(Succeed())
			expectHostClean()
		})
	})
})

var _ = Describe("host mode", func() {
	It("uses the container port on the host, with no namespace", func() {
		logger := lagertest.NewTestLogger("network")
		cfg := testConfig(GinkgoT().TempDir(), 0)
		cfg.Mode = network.ModeHost
		m, err := network.New(logger, cfg)
		Expect(err).NotTo(HaveOccurred())
		res, err := m.Setup(context.Background(), logger, "host-app", []uint16{45200})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.NetNSPath).To(BeEmpty())
		startHTTPD("", 45200, "on the host")
		Eventually(func() (string, error) { return get(hostPort(res.IPv4, res.Ports[0].HostPort)) }).
			WithTimeout(10 * time.Second).Should(Equal("on the host"))
		Expect(m.Teardown(context.Background(), logger, "host-app")).To(Succeed())
	})
})
