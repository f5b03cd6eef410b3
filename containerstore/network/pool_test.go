package network_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	gocni "github.com/containerd/go-cni"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/tedsuo/ifrit"

	"github.com/cellagent/cellagent/containerstore/network"
	"github.com/cellagent/cellagent/containerstore/network/networkfakes"
)

var _ = Describe("Pool", func() {
	var (
		logger  *lagertest.TestLogger
		ctx     context.Context
		host    *fakeHost
		cfg     network.Config
		manager *network.Manager
		process ifrit.Process
		clk     *fakeclock.FakeClock
		cpu     *networkfakes.FakeCPU
	)

	newManager := func() *network.Manager {
		m, err := network.NewWithDeps(logger, cfg, withCPU(host.deps(), cpu))
		Expect(err).NotTo(HaveOccurred())
		return m
	}
	// start runs m's pool (recovery first) until stop.
	start := func(m *network.Manager) {
		process = ifrit.Invoke(m.PoolRunner(logger))
	}
	stop := func() {
		if process != nil {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive(BeNil()))
			process = nil
		}
	}
	// ready answers the ready slots, each time after the refill's quiet
	// time (it waits that long after the last Setup).
	ready := func(m *network.Manager) func() int {
		return func() int {
			clk.Increment(time.Second)
			r, _ := m.PoolStats()
			return r
		}
	}
	// pooled answers the pooled namespaces and the CNI IDs holding an
	// address on the fake host.
	pooled := func() (netns, leases []string) {
		host.mu.Lock()
		defer host.mu.Unlock()
		for n := range host.netns {
			if strings.HasPrefix(n, "cellagent-pool.") {
				netns = append(netns, n)
			}
		}
		for id := range host.leases {
			leases = append(leases, id)
		}
		slices.Sort(netns)
		slices.Sort(leases)
		return netns, leases
	}
	poolFile := func() string { return filepath.Join(cfg.DataDir, "network", "pool.json") }
	readPoolFile := func() poolFileSlots {
		GinkgoHelper()
		var f poolFileSlots
		b, err := os.ReadFile(poolFile())
		Expect(err).NotTo(HaveOccurred())
		Expect(json.Unmarshal(b, &f)).To(Succeed())
		return f
	}
	writePoolFile := func(content string) {
		Expect(os.MkdirAll(filepath.Dir(poolFile()), 0o700)).To(Succeed())
		Expect(os.WriteFile(poolFile(), []byte(content), 0o600)).To(Succeed())
	}
	// prepared makes a pooled namespace with an address on the fake host,
	// as an earlier run would have.
	prepared := func(id string) {
		_, err := host.namespaces.Create(ctx, "cellagent-"+id)
		Expect(err).NotTo(HaveOccurred())
		_, err = host.cni.Setup(ctx, id, "/var/run/netns/cellagent-"+id)
		Expect(err).NotTo(HaveOccurred())
	}

	BeforeEach(func() {
		logger = lagertest.NewTestLogger("test")
		ctx = context.Background()
		host = newFakeHost()
		cfg = network.DefaultConfig()
		cfg.DataDir = GinkgoT().TempDir()
		cfg.HostPortRange = "40000-40009"
		cfg.ExternalIP = "192.0.2.10"
		clk = fakeclock.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
		cfg.Clock = clk
		cfg.PoolSize = 2
		cpu = &networkfakes.FakeCPU{} // idle
	})
	AfterEach(stop)

	It("holds the refill back while the CPUs are busy, but not for more than 5 s a slot", func() {
		cpu.BusyReturns(true)
		manager = newManager()
		start(manager)
		Eventually(cpu.BusyCallCount).Should(BeNumerically(">=", 1))
		// 4.75 s of busy CPUs, looked at every 250 ms: nothing prepared.
		for i := 0; i < 19; i++ {
			n := cpu.BusyCallCount()
			clk.WaitForWatcherAndIncrement(250 * time.Millisecond)
			Eventually(cpu.BusyCallCount).Should(BeNumerically(">", n))
		}
		Expect(host.namespaces.CreateCallCount()).To(Equal(0))
		Expect(host.cni.SetupCallCount()).To(Equal(0))
		// At 5 s it prepares one without asking, then waits again.
		clk.WaitForWatcherAndIncrement(250 * time.Millisecond)
		Eventually(host.cni.SetupCallCount).Should(Equal(1))
		Consistently(host.cni.SetupCallCount, 100*time.Millisecond).Should(Equal(1))
		r, _ := manager.PoolStats()
		Expect(r).To(Equal(1))
		// Idle CPUs: the next slot at the next look.
		cpu.BusyReturns(false)
		clk.WaitForWatcherAndIncrement(250 * time.Millisecond)
		Eventually(host.cni.SetupCallCount).Should(Equal(2))
		r, _ = manager.PoolStats()
		Expect(r).To(Equal(2))
	})

	It("fills up to its size, hands a prepared namespace to a Setup and refills", func() {
		manager = newManager()
		start(manager)
		Eventually(ready(manager)).Should(Equal(2))
		netns, leases := pooled()
		Expect(netns).To(Equal([]string{"cellagent-pool.0", "cellagent-pool.1"}))
		Expect(leases).To(Equal([]string{"pool.0", "pool.1"}))
		setups := host.cni.SetupCallCount()

		res, err := manager.Setup(ctx, logger, "g1", []uint16{8080})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.NetNSPath).To(Equal("/var/run/netns/cellagent-g1"), "renamed to the container's name")
		Expect(res.IPv4.String()).To(Equal("10.255.0.2"), "pool.0's address")
		Expect(host.has("cellagent-pool.0")).To(BeFalse())
		_, guid, ip, _ := host.hostPorts.FilterArgsForCall(0)
		Expect(guid).To(Equal("g1"))
		Expect(ip.String()).To(Equal("10.255.0.2"), "the filter is the instance's, on the claimed address")
		Expect(host.hostPorts.MapCallCount()).To(Equal(1))

		Eventually(ready(manager)).Should(Equal(2), "refilled")
		Expect(host.cni.SetupCallCount()).To(Equal(setups+1), "one CNI ADD: the refill's, none for g1")
		netns, _ = pooled()
		Expect(netns).To(Equal([]string{"cellagent-pool.1", "cellagent-pool.2"}))

		Expect(manager.Teardown(ctx, logger, "g1")).To(Succeed())
		_, id, _, _ := host.cni.RemoveArgsForCall(host.cni.RemoveCallCount() - 1)
		Expect(id).To(Equal("pool.0"), "CNI DEL under the ID the address was leased with")
		Expect(host.has("cellagent-g1")).To(BeFalse())
		_, leases = pooled()
		Expect(leases).To(Equal([]string{"pool.1", "pool.2"}), "the container's address is freed, not returned to the pool")
	})

	Context("when a pooled container is deleted", func() {
		// g1 claims pool.0 and the refill is held back (no clock
		// increment): the pool has pool.1 and room for one.
		var g1 network.Result
		JustBeforeEach(func() {
			manager = newManager()
			start(manager)
			Eventually(ready(manager)).Should(Equal(2))
			var err error
			g1, err = manager.Setup(ctx, logger, "g1", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			Expect(g1.IPv4.String()).To(Equal("10.255.0.2"))
			r, _ := manager.PoolStats()
			Expect(r).To(Equal(1))
		})

		It("gives the namespace back, clean, and a later start claims it without CNI", func() {
			adds, dels := host.cni.SetupCallCount(), host.cni.RemoveCallCount()
			Expect(manager.TeardownStopped(ctx, logger, "g1")).To(Succeed())
			Expect(host.scrubbed).To(Equal([]string{"/var/run/netns/cellagent-g1"}))
			Expect(host.forgotten).To(Equal([]string{"10.255.0.2"}), "the host forgets the address's flows")
			Expect(host.cni.RemoveCallCount()).To(Equal(dels), "no CNI DEL")
			Expect(host.has("cellagent-g1")).To(BeFalse())
			Expect(host.has("cellagent-pool.0")).To(BeTrue(), "renamed back")
			Expect(host.ports("g1")).To(BeEmpty(), "its host ports are unmapped")
			Expect(host.hostPorts.UnfilterCallCount()).To(Equal(1))
			r, _ := manager.PoolStats()
			Expect(r).To(Equal(2))
			_, leases := pooled()
			Expect(leases).To(Equal([]string{"pool.0", "pool.1"}), "the address stays leased to the slot")
			f := readPoolFile()
			Expect(f.Slots).To(HaveLen(2))
			Expect(f.Slots[1].ID).To(Equal("pool.0"))
			Expect(f.Slots[1].Ready).To(BeTrue())

			// Claims take the slot that waited longest first.
			g2, err := manager.Setup(ctx, logger, "g2", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			Expect(g2.IPv4.String()).To(Equal("10.255.0.3"), "pool.1")
			g3, err := manager.Setup(ctx, logger, "g3", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			Expect(g3.IPv4.String()).To(Equal("10.255.0.2"), "pool.0 again")
			Expect(g3.NetNSPath).To(Equal("/var/run/netns/cellagent-g3"))
			Expect(host.cni.SetupCallCount()).To(Equal(adds), "no CNI ADD for either")

			// A restart adopts the returned slot like any other.
			Expect(manager.TeardownStopped(ctx, logger, "g3")).To(Succeed())
			stop()
			manager = newManager()
			start(manager)
			Eventually(func() []string { n, _ := pooled(); return n }).Should(ContainElement("cellagent-pool.0"))
			Eventually(ready(manager)).Should(Equal(2))
			Expect(host.has("cellagent-pool.0")).To(BeTrue(), "kept by recovery")
		})

		Context("with a return delay (routes name container addresses)", func() {
			BeforeEach(func() { cfg.ReturnDelay = time.Minute })

			It("hands the namespace out again only after the delay", func() {
				Expect(manager.TeardownStopped(ctx, logger, "g1")).To(Succeed())
				Expect(host.has("cellagent-pool.0")).To(BeTrue())
				r, _ := manager.PoolStats()
				Expect(r).To(Equal(1), "pool.0 waits")
				_, err := manager.Setup(ctx, logger, "g2", nil) // pool.1
				Expect(err).NotTo(HaveOccurred())
				adds := host.cni.SetupCallCount()
				g3, err := manager.Setup(ctx, logger, "g3", nil)
				Expect(err).NotTo(HaveOccurred())
				Expect(g3.IPv4.String()).NotTo(Equal("10.255.0.2"))
				Expect(host.cni.SetupCallCount()).To(Equal(adds+1), "a namespace of its own")

				clk.Increment(time.Minute)
				g4, err := manager.Setup(ctx, logger, "g4", nil)
				Expect(err).NotTo(HaveOccurred())
				Expect(g4.IPv4.String()).To(Equal("10.255.0.2"))
			})
		})

		It("gives back a namespace that holds only TIME_WAIT sockets, to be handed out once they ended", func() {
			host.dirty = fmt.Errorf("%w: tcp6 socket 0000000000000000FFFF00000200FF0A:1F90 state 06", network.ErrOnlyTimeWait)
			Expect(manager.TeardownStopped(ctx, logger, "g1")).To(Succeed())
			Expect(host.has("cellagent-pool.0")).To(BeTrue(), "returned, not destroyed")
			Expect(host.forgotten).To(ConsistOf("10.255.0.2"))
			Expect(logger).To(gbytes.Say(`time-wait-left`))
			_, err := manager.Setup(ctx, logger, "g2", nil) // pool.1
			Expect(err).NotTo(HaveOccurred())
			g3, err := manager.Setup(ctx, logger, "g3", nil)
			Expect(err).NotTo(HaveOccurred())
			Expect(g3.IPv4.String()).NotTo(Equal("10.255.0.2"), "not before the TIME_WAITs ended")

			clk.Increment(network.TimeWaitLength)
			g4, err := manager.Setup(ctx, logger, "g4", nil)
			Expect(err).NotTo(HaveOccurred())
			Expect(g4.IPv4.String()).To(Equal("10.255.0.2"))
		})

		It("destroys the namespace when the container's processes may still run", func() {
			Expect(manager.Teardown(ctx, logger, "g1")).To(Succeed())
			Expect(host.scrubbed).To(BeEmpty(), "not even looked at")
			_, id, _, _ := host.cni.RemoveArgsForCall(host.cni.RemoveCallCount() - 1)
			Expect(id).To(Equal("pool.0"))
			Expect(host.has("cellagent-pool.0")).To(BeFalse())
		})

		It("destroys the namespace when something of the container is left", func() {
			host.dirty = errors.New("process 4242 is in it")
			Expect(manager.TeardownStopped(ctx, logger, "g1")).To(Succeed())
			Expect(host.forgotten).To(BeEmpty())
			_, id, _, _ := host.cni.RemoveArgsForCall(host.cni.RemoveCallCount() - 1)
			Expect(id).To(Equal("pool.0"))
			Expect(host.has("cellagent-g1")).To(BeFalse())
			Expect(host.has("cellagent-pool.0")).To(BeFalse())
			r, _ := manager.PoolStats()
			Expect(r).To(Equal(1))
			Expect(logger).To(gbytes.Say(`not-returned-to-pool.*process 4242 is in it.*not-clean`))
		})

		It("destroys the namespace when the host cannot forget the address's flows", func() {
			host.forgetErr = errors.New("conntrack delete: EPERM")
			Expect(manager.TeardownStopped(ctx, logger, "g1")).To(Succeed())
			_, id, _, _ := host.cni.RemoveArgsForCall(host.cni.RemoveCallCount() - 1)
			Expect(id).To(Equal("pool.0"))
			Expect(host.has("cellagent-pool.0")).To(BeFalse())
			_, leases := pooled()
			Expect(leases).To(Equal([]string{"pool.1"}))
			r, _ := manager.PoolStats()
			Expect(r).To(Equal(1))
		})

		It("destroys the namespace when the pool is full", func() {
			Eventually(ready(manager)).Should(Equal(2)) // refilled
			Expect(manager.TeardownStopped(ctx, logger, "g1")).To(Succeed())
			Expect(host.scrubbed).To(BeEmpty(), "not even looked at")
			Expect(logger).To(gbytes.Say(`not-returned-to-pool.*the pool is full.*pool-full`))
			Expect(host.has("cellagent-pool.0")).To(BeFalse())
			r, _ := manager.PoolStats()
			Expect(r).To(Equal(2))
		})

		It("does not hand the slot out when the teardown cannot finish, and a retry destroys it", func() {
			// The host ports' file cannot be written (a non-empty
			// directory in its place, which stops root too).
			ports := filepath.Join(cfg.DataDir, "network", "ports.json")
			Expect(os.Remove(ports)).To(Succeed())
			Expect(os.MkdirAll(filepath.Join(ports, "x"), 0o700)).To(Succeed())
			Expect(manager.TeardownStopped(ctx, logger, "g1")).NotTo(Succeed())
			Expect(os.RemoveAll(ports)).To(Succeed())
			Expect(manager.TeardownStopped(ctx, logger, "g1")).To(Succeed())
			Expect(host.has("cellagent-pool.0")).To(BeFalse())
			Expect(host.has("cellagent-g1")).To(BeFalse())
			_, leases := pooled()
			Expect(leases).To(Equal([]string{"pool.1"}))
			Eventually(ready(manager)).Should(Equal(2), "refilled: the slot no longer counts in the pool")
			netns, _ := pooled()
			Expect(netns).To(Equal([]string{"cellagent-pool.1", "cellagent-pool.2"}))
		})
	})

	It("refills only while no Setup runs and none ended just now", func() {
		manager = newManager()
		start(manager)
		Eventually(ready(manager)).Should(Equal(2))
		release := make(chan struct{})
		host.hostPorts.MapStub = func(context.Context, string, net.IP, []network.PortMapping) error {
			<-release
			return nil
		}
		creates := host.namespaces.CreateCallCount()
		done := make(chan error)
		go func() {
			_, err := manager.Setup(ctx, logger, "g1", []uint16{8080})
			done <- err
		}()
		Eventually(host.hostPorts.MapCallCount).Should(Equal(1))
		Expect(ready(manager)()).To(Equal(1))
		Consistently(host.namespaces.CreateCallCount, 200*time.Millisecond).Should(Equal(creates), "no refill beside a running Setup")
		close(release)
		Expect(<-done).To(Succeed())
		Consistently(host.namespaces.CreateCallCount, 200*time.Millisecond).Should(Equal(creates), "nor just after one, while its container starts")
		Eventually(ready(manager)).Should(Equal(2))
		Expect(host.namespaces.CreateCallCount()).To(Equal(creates + 1))
	})

	It("makes a namespace of its own when the pool is empty", func() {
		cfg.PoolSize = 0
		manager = newManager()
		start(manager)
		res, err := manager.Setup(ctx, logger, "g1", nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.NetNSPath).To(Equal("/var/run/netns/cellagent-g1"))
		_, id, _, _ := host.cni.SetupArgsForCall(0)
		Expect(id).To(Equal("g1"))
		netns, _ := pooled()
		Expect(netns).To(BeEmpty())
	})

	Context("when a start finds no slot ready", func() {
		// g1 and g2 take both slots; with no clock increment the refill
		// waits, so g3 makes its namespace itself.
		JustBeforeEach(func() {
			manager = newManager()
			start(manager)
			Eventually(ready(manager)).Should(Equal(2))
			for _, g := range []string{"g1", "g2"} {
				_, err := manager.Setup(ctx, logger, g, nil)
				Expect(err).NotTo(HaveOccurred())
			}
		})

		It("makes it under a slot ID of its own, and its delete gives it to the pool", func() {
			g3, err := manager.Setup(ctx, logger, "g3", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			Expect(g3.NetNSPath).To(Equal("/var/run/netns/cellagent-g3"))
			_, id, path, _ := host.cni.SetupArgsForCall(host.cni.SetupCallCount() - 1)
			Expect(id).To(Equal("pool.2"), "the next slot ID, not the guid")
			Expect(path).To(Equal("/var/run/netns/cellagent-g3"))

			adds, dels := host.cni.SetupCallCount(), host.cni.RemoveCallCount()
			Expect(manager.TeardownStopped(ctx, logger, "g3")).To(Succeed())
			Expect(host.cni.RemoveCallCount()).To(Equal(dels), "no CNI DEL")
			Expect(host.has("cellagent-g3")).To(BeFalse())
			Expect(host.has("cellagent-pool.2")).To(BeTrue(), "renamed to its slot's name")
			r, _ := manager.PoolStats()
			Expect(r).To(Equal(1))

			g4, err := manager.Setup(ctx, logger, "g4", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			Expect(g4.IPv4).To(Equal(g3.IPv4), "g3's namespace, claimed")
			Expect(host.cni.SetupCallCount()).To(Equal(adds), "no CNI ADD")
		})

		It("after a crash before its CNI ADD, never makes a slot of the same ID", func() {
			// g3's state names pool.2; the process dies in CNI ADD,
			// before any lease: only the state knows the ID.
			inAdd, never := make(chan struct{}), make(chan struct{})
			DeferCleanup(func() { close(never) })
			add := host.cni.SetupStub
			host.cni.SetupStub = func(ctx context.Context, id, path string, opts ...gocni.NamespaceOpts) (*gocni.Result, error) {
				if id == "pool.2" && inAdd != nil {
					close(inAdd)
					inAdd = nil
					<-never
					return nil, errors.New("never answers")
				}
				return add(ctx, id, path, opts...)
			}
			wait := inAdd
			go func() { _, _ = manager.Setup(ctx, logger, "g3", nil) }()
			Eventually(wait).Should(BeClosed())
			stop()

			manager = newManager()
			start(manager)
			Eventually(ready(manager)).Should(Equal(2))
			netns, _ := pooled()
			Expect(netns).To(Equal([]string{"cellagent-pool.3", "cellagent-pool.4"}))
		})
	})

	It("does not claim before recovery sorted out the pool file", func() {
		prepared("pool.0")
		writePoolFile(`{"next":1,"slots":[{"id":"pool.0","ipv4":"10.255.0.2","ready":true}]}`)
		manager = newManager() // its pool runner is not started
		_, err := manager.Setup(ctx, logger, "g1", nil)
		Expect(err).NotTo(HaveOccurred())
		_, id, _, _ := host.cni.SetupArgsForCall(1)
		Expect(id).To(Equal("g1"))
		Expect(host.has("cellagent-pool.0")).To(BeTrue())
	})

	It("after a restart keeps the ready slots, gives claimed ones to their containers and never hands one out twice", func() {
		manager = newManager()
		start(manager)
		Eventually(ready(manager)).Should(Equal(2))
		a, err := manager.Setup(ctx, logger, "g1", []uint16{8080})
		Expect(err).NotTo(HaveOccurred())
		stop() // like kill -9: the file may still mark pool.0 claimed

		manager = newManager()
		start(manager)
		Eventually(ready(manager)).Should(Equal(2))
		_, err = manager.Restore(logger, "g1")
		Expect(err).NotTo(HaveOccurred())
		b, err := manager.Setup(ctx, logger, "g2", []uint16{8080})
		Expect(err).NotTo(HaveOccurred())
		Expect(b.IPv4).NotTo(Equal(a.IPv4))
		Eventually(ready(manager)).Should(Equal(2))

		Expect(manager.Teardown(ctx, logger, "g1")).To(Succeed())
		Expect(manager.Teardown(ctx, logger, "g2")).To(Succeed())
		netns, leases := pooled()
		Expect(netns).To(HaveLen(2))
		Expect(leases).To(HaveLen(2))
		for i := range netns {
			Expect(netns[i]).To(Equal("cellagent-"+leases[i]), "only the pool's own, each with its address")
		}
	})

	It("destroys half-prepared slots, lost namespaces, strays and slots beyond its size", func() {
		for _, id := range []string{"pool.0", "pool.1", "pool.2", "pool.3", "pool.4", "pool.6", "pool.7"} {
			prepared(id)
		}
		host.mu.Lock()
		delete(host.netns, "cellagent-pool.5") // never made: its lease only
		host.leases["pool.5"] = true
		host.mu.Unlock()
		Expect(host.namespaces.Delete(ctx, "cellagent-pool.6")).To(Succeed()) // gone behind our back
		// pool.7: not in the file at all (a lost write).
		writePoolFile(`{"next":7,"slots":[
			{"id":"pool.0","ipv4":"10.255.0.2","ready":true},
			{"id":"pool.1","ready":false},
			{"id":"pool.2","ipv4":"10.255.0.4","ready":true},
			{"id":"pool.3","ipv4":"10.255.0.5","ready":true},
			{"id":"pool.4","ipv4":"10.255.0.6","ready":true},
			{"id":"pool.5","ready":false},
			{"id":"pool.6","ipv4":"10.255.0.8","ready":true}]}`)
		cfg.PoolSize = 2
		manager = newManager()
		start(manager)
		Eventually(ready(manager)).Should(Equal(2))
		netns, leases := pooled()
		Expect(netns).To(Equal([]string{"cellagent-pool.0", "cellagent-pool.2"}))
		Expect(leases).To(Equal([]string{"pool.0", "pool.2"}))

		b, err := manager.Setup(ctx, logger, "g1", nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(b.IPv4.String()).To(Equal("10.255.0.2"))
		Eventually(ready(manager)).Should(Equal(2))
		netns, _ = pooled()
		Expect(netns).To(ContainElement("cellagent-pool.8"), "new slots are numbered after the highest ever used")
	})

	It("never hands out again a slot a container's state names, though the pool file still lists it", func() {
		manager = newManager()
		start(manager)
		Eventually(ready(manager)).Should(Equal(2))
		stale, err := os.ReadFile(poolFile())
		Expect(err).NotTo(HaveOccurred())
		a, err := manager.Setup(ctx, logger, "g1", nil)
		Expect(err).NotTo(HaveOccurred())
		stop()
		// A crash after g1's state was saved, before its namespace was
		// renamed and before the pool file was written again.
		Expect(host.namespaces.Rename(ctx, "cellagent-g1", "cellagent-pool.0")).Error().NotTo(HaveOccurred())
		Expect(os.WriteFile(poolFile(), stale, 0o600)).To(Succeed())

		manager = newManager()
		start(manager)
		Eventually(ready(manager)).Should(Equal(2))
		for _, g := range []string{"g2", "g3", "g4"} {
			b, err := manager.Setup(ctx, logger, g, nil)
			Expect(err).NotTo(HaveOccurred())
			Expect(b.IPv4).NotTo(Equal(a.IPv4), g)
		}
		Expect(host.has("cellagent-pool.0")).To(BeTrue(), "g1's, until its teardown")
		Expect(manager.Teardown(ctx, logger, "g1")).To(Succeed())
		Expect(host.has("cellagent-pool.0")).To(BeFalse())
	})

	It("puts a claimed slot back when the container's state cannot be saved", func() {
		manager = newManager()
		start(manager)
		Eventually(ready(manager)).Should(Equal(2))
		// A file where the states' directory should be: no state saves.
		Expect(os.WriteFile(filepath.Join(cfg.DataDir, "network", "containers"), nil, 0o600)).To(Succeed())
		_, err := manager.Setup(ctx, logger, "g1", nil)
		Expect(err).To(HaveOccurred())
		Expect(ready(manager)()).To(Equal(2))
		netns, _ := pooled()
		Expect(netns).To(Equal([]string{"cellagent-pool.0", "cellagent-pool.1"}))
	})

	It("leaves alone a pooled namespace that a container's state names", func() {
		manager = newManager()
		start(manager)
		Eventually(ready(manager)).Should(Equal(2))
		_, err := manager.Setup(ctx, logger, "g1", nil)
		Expect(err).NotTo(HaveOccurred())
		stop()
		// A crash after the claim, before the rename: the namespace still
		// has its pool name, and the pool file was lost.
		Expect(host.namespaces.Rename(ctx, "cellagent-g1", "cellagent-pool.0")).Error().NotTo(HaveOccurred())
		Expect(os.Remove(poolFile())).To(Succeed())

		manager = newManager()
		start(manager)
		Eventually(ready(manager)).Should(Equal(2))
		Expect(host.has("cellagent-pool.0")).To(BeTrue(), "g1's")
		Expect(manager.Teardown(ctx, logger, "g1")).To(Succeed())
		Expect(host.has("cellagent-pool.0")).To(BeFalse(), "teardown knows both names")
		_, leases := pooled()
		Expect(leases).NotTo(ContainElement("pool.0"))
	})

	It("checks its size", func() {
		cfg.PoolSize = -1
		_, err := network.NewWithDeps(logger, cfg, withCPU(host.deps(), cpu))
		Expect(err).To(MatchError(ContainSubstring("network pool_size -1")))
	})

	It("writes a pool file a restart can read", func() {
		manager = newManager()
		start(manager)
		Eventually(ready(manager)).Should(Equal(2))
		f := readPoolFile()
		Expect(f.Slots).To(HaveLen(2))
		Expect(f.Slots[0].Ready && f.Slots[1].Ready).To(BeTrue())
	})
})

func withCPU(d network.Deps, cpu network.CPU) network.Deps {
	d.CPU = cpu
	return d
}

// poolFileSlots is what a test reads of the pool's file.
type poolFileSlots struct {
	Slots []struct {
		ID    string `json:"id"`
		Ready bool   `json:"ready"`
	} `json:"slots"`
}
