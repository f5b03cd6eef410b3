package network_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	gocni "github.com/containerd/go-cni"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore/network"
	"github.com/cellagent/cellagent/containerstore/network/networkfakes"
)

// fakeHost wires the fakes to a little model of the host: the namespaces
// that exist, the addresses CNI handed out and the host ports forwarded.
type fakeHost struct {
	mu     sync.Mutex
	netns  map[string]bool
	nextIP int
	mapped map[string][]uint16
	leases map[string]bool // CNI container IDs holding an address

	namespaces *networkfakes.FakeNamespaces
	cni        *networkfakes.FakeCNI
	hostPorts  *networkfakes.FakeHostPorts

	// dirty, when set, is what the scrubber finds left in a namespace;
	// forgotten are the addresses conntrack was asked to forget, and
	// forgetErr its answer.
	dirty     error
	scrubbed  []string
	forgotten []string
	forgetErr error
}

// Reusable implements network.Scrubber on the fake host.
func (h *fakeHost) Reusable(path string, _ net.IP) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.scrubbed = append(h.scrubbed, path)
	return h.dirty
}

// Forget implements network.Conntrack on the fake host.
func (h *fakeHost) Forget(ip net.IP) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.forgotten = append(h.forgotten, ip.String())
	return 1, h.forgetErr
}

// deps are the Manager's collaborators on the fake host.
func (h *fakeHost) deps() network.Deps {
	return network.Deps{Namespaces: h.namespaces, CNI: h.cni, HostPorts: h.hostPorts, Scrubber: h, Conntrack: h}
}

func newFakeHost() *fakeHost {
	h := &fakeHost{
		netns:      map[string]bool{},
		nextIP:     2,
		mapped:     map[string][]uint16{},
		leases:     map[string]bool{},
		namespaces: &networkfakes.FakeNamespaces{},
		cni:        &networkfakes.FakeCNI{},
		hostPorts:  &networkfakes.FakeHostPorts{},
	}
	h.hostPorts.MapStub = func(_ context.Context, guid string, _ net.IP, ports []network.PortMapping) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, p := range ports {
			h.mapped[guid] = append(h.mapped[guid], p.HostPort)
		}
		return nil
	}
	h.hostPorts.UnmapStub = func(_ context.Context, guid string, _ []uint16) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.mapped, guid)
		return nil
	}
	h.hostPorts.MappedStub = func(context.Context) (map[string][]uint16, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		out := map[string][]uint16{}
		for g, p := range h.mapped {
			out[g] = append([]uint16(nil), p...)
		}
		return out, nil
	}
	h.namespaces.CreateStub = func(_ context.Context, name string) (string, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.netns[name] = true
		return "/var/run/netns/" + name, nil
	}
	h.namespaces.DeleteStub = func(_ context.Context, name string) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.netns, name)
		return nil
	}
	h.namespaces.PathStub = func(name string) (string, bool) {
		h.mu.Lock()
		defer h.mu.Unlock()
		return "/var/run/netns/" + name, h.netns[name]
	}
	h.namespaces.ListStub = func() ([]string, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		var names []string
		for n := range h.netns {
			names = append(names, n)
		}
		return names, nil
	}
	h.namespaces.RenameStub = func(_ context.Context, from, to string) (string, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if !h.netns[from] || h.netns[to] {
			return "", fmt.Errorf("rename %s to %s: no such netns or target exists", from, to)
		}
		delete(h.netns, from)
		h.netns[to] = true
		return "/var/run/netns/" + to, nil
	}
	h.cni.RemoveStub = func(_ context.Context, id, _ string, _ ...gocni.NamespaceOpts) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.leases, id)
		return nil
	}
	h.cni.SetupStub = func(_ context.Context, id, _ string, _ ...gocni.NamespaceOpts) (*gocni.Result, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.leases[id] = true
		ip := net.IPv4(10, 255, 0, byte(h.nextIP))
		h.nextIP++
		return &gocni.Result{Interfaces: map[string]*gocni.Config{
			"lo":   {IPConfigs: []*gocni.IPConfig{{IP: net.ParseIP("127.0.0.1")}}},
			"eth0": {IPConfigs: []*gocni.IPConfig{{IP: ip}, {IP: net.ParseIP("fd00::2")}}},
		}}, nil
	}
	return h
}

func (h *fakeHost) has(name string) bool {
	_, ok := h.namespaces.Path(name)
	return ok
}

func (h *fakeHost) ports(guid string) []uint16 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mapped[guid]
}

var _ = Describe("Manager", func() {
	var (
		logger  *lagertest.TestLogger
		ctx     context.Context
		clk     *fakeclock.FakeClock
		host    *fakeHost
		cfg     network.Config
		manager *network.Manager
	)

	newManager := func() *network.Manager {
		m, err := network.NewWithDeps(logger, cfg, host.deps())
		Expect(err).NotTo(HaveOccurred())
		return m
	}
	statePath := func(guid string) string {
		return filepath.Join(cfg.DataDir, "network", "containers", guid+".json")
	}

	BeforeEach(func() {
		logger = lagertest.NewTestLogger("test")
		ctx = context.Background()
		clk = fakeclock.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
		host = newFakeHost()
		cfg = network.DefaultConfig()
		cfg.DataDir = GinkgoT().TempDir()
		cfg.HostPortRange = "40000-40009"
		cfg.ExternalIP = "192.0.2.10"
		cfg.Clock = clk
	})

	JustBeforeEach(func() {
		manager = newManager()
	})

	Describe("Setup", func() {
		It("makes a netns, runs CNI ADD in it and maps a host port per container port", func() {
			res, err := manager.Setup(ctx, logger, "g1", []uint16{8080, 61001})
			Expect(err).NotTo(HaveOccurred())
			Expect(res.NetNSPath).To(Equal("/var/run/netns/cellagent-g1"))
			Expect(res.IPv4.String()).To(Equal("10.255.0.2"))
			Expect(res.IPv6.String()).To(Equal("fd00::2"))
			Expect(res.ExternalIP.String()).To(Equal("192.0.2.10"))
			Expect(res.Ports).To(Equal([]network.PortMapping{
				{ContainerPort: 8080, HostPort: 40000}, {ContainerPort: 61001, HostPort: 40001},
			}))

			Expect(host.cni.SetupCallCount()).To(Equal(1))
			_, id, path, opts := host.cni.SetupArgsForCall(0)
			Expect(id).To(Equal("g1"))
			Expect(path).To(Equal(res.NetNSPath))
			Expect(opts).To(BeEmpty(), "host ports are not CNI's")
			Expect(host.hostPorts.MapCallCount()).To(Equal(1))
			_, guid, ip, ports := host.hostPorts.MapArgsForCall(0)
			Expect(guid).To(Equal("g1"))
			Expect(ip.String()).To(Equal("10.255.0.2"), "to the address CNI gave")
			Expect(ports).To(Equal(res.Ports))
			Expect(statePath("g1")).To(BeARegularFile())
		})

		It("refuses a bad guid before touching anything", func() {
			_, err := manager.Setup(ctx, logger, "../x", nil)
			Expect(err).To(MatchError(network.ErrInvalidGUID))
			Expect(host.namespaces.CreateCallCount()).To(BeZero())
		})

		It("refuses duplicate or zero container ports", func() {
			_, err := manager.Setup(ctx, logger, "g1", []uint16{8080, 8080, 0})
			Expect(err).To(MatchError(ContainSubstring("container port 8080 given twice")))
			Expect(err).To(MatchError(ContainSubstring("container port 0")))
		})

		It("refuses a second Setup of the same guid", func() {
			_, err := manager.Setup(ctx, logger, "g1", nil)
			Expect(err).NotTo(HaveOccurred())
			_, err = manager.Setup(ctx, logger, "g1", nil)
			Expect(err).To(MatchError(network.ErrExists))
		})

		It("fails with ErrInsufficientPorts when the range is used up", func() {
			_, err := manager.Setup(ctx, logger, "g1", []uint16{1, 2, 3, 4, 5, 6, 7, 8, 9})
			Expect(err).NotTo(HaveOccurred())
			_, err = manager.Setup(ctx, logger, "g2", []uint16{1, 2})
			Expect(err).To(MatchError(network.ErrInsufficientPorts))
			Expect(err).To(MatchError(ContainSubstring("40000-40009 for 2 more (9 in use, 0 in quarantine)")))
			Expect(host.namespaces.CreateCallCount()).To(Equal(1))
		})

		Context("when CNI ADD fails", func() {
			BeforeEach(func() {
				host.cni.SetupReturns(nil, errors.New("bridge: boom"))
			})

			It("rolls back CNI, the netns, the state and the ports", func() {
				_, err := manager.Setup(ctx, logger, "g1", []uint16{8080})
				Expect(err).To(MatchError(ContainSubstring("cni add g1: bridge: boom")))
				Expect(host.cni.RemoveCallCount()).To(Equal(1))
				Expect(host.hostPorts.MapCallCount()).To(BeZero())
				Expect(host.has("cellagent-g1")).To(BeFalse())
				Expect(statePath("g1")).NotTo(BeAnExistingFile())
				inUse, quarantined := manager.PortAllocator().Stats()
				Expect([]int{inUse, quarantined}).To(Equal([]int{0, 0}))
			})
		})

		Context("when mapping the host ports fails and so does undoing it", func() {
			BeforeEach(func() {
				host.hostPorts.MapReturns(errors.New("nft: File exists"))
				host.hostPorts.UnmapReturns(errors.New("nft: Device or resource busy"))
			})

			It("keeps the state and the ports, so that a teardown can finish", func() {
				_, err := manager.Setup(ctx, logger, "g1", []uint16{8080})
				Expect(err).To(MatchError(ContainSubstring("nft: File exists")))
				Expect(statePath("g1")).To(BeARegularFile())
				Expect(manager.PortAllocator().Owners()).To(ContainElement("g1"))

				host.hostPorts.UnmapReturns(nil)
				Expect(manager.Teardown(ctx, logger, "g1")).To(Succeed())
				Expect(statePath("g1")).NotTo(BeAnExistingFile())
				Expect(manager.PortAllocator().Owners()).To(BeEmpty())
			})
		})

		Context("when mapping the host ports fails", func() {
			BeforeEach(func() {
				host.hostPorts.MapReturns(errors.New("nft: File exists"))
			})

			It("rolls back the mapping, CNI, the netns, the state and the ports", func() {
				_, err := manager.Setup(ctx, logger, "g1", []uint16{8080})
				Expect(err).To(MatchError(ContainSubstring("nft: File exists")))
				Expect(host.hostPorts.UnmapCallCount()).To(Equal(1))
				_, guid, ports := host.hostPorts.UnmapArgsForCall(0)
				Expect(guid).To(Equal("g1"))
				Expect(ports).To(Equal([]uint16{40000}))
				Expect(host.cni.RemoveCallCount()).To(Equal(1))
				Expect(host.has("cellagent-g1")).To(BeFalse())
				Expect(statePath("g1")).NotTo(BeAnExistingFile())
				inUse, quarantined := manager.PortAllocator().Stats()
				Expect([]int{inUse, quarantined}).To(Equal([]int{0, 0}))
			})
		})

		It("gives 20 concurrent containers distinct ports", func() {
			cfg.HostPortRange = "40000-40039"
			manager = newManager()
			var wg sync.WaitGroup
			results := make([]network.Result, 20)
			errs := make([]error, 20)
			for i := range 20 {
				wg.Go(func() {
					results[i], errs[i] = manager.Setup(ctx, logger, fmt.Sprintf("g%d", i), []uint16{8080, 61001})
				})
			}
			wg.Wait()
			seen := map[uint16]bool{}
			for i := range 20 {
				Expect(errs[i]).NotTo(HaveOccurred())
				for _, p := range results[i].Ports {
					Expect(seen[p.HostPort]).To(BeFalse(), "port %d twice", p.HostPort)
					seen[p.HostPort] = true
				}
			}
			Expect(seen).To(HaveLen(40))
		})
	})

	Describe("Teardown", func() {
		JustBeforeEach(func() {
			_, err := manager.Setup(ctx, logger, "g1", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
		})

		It("runs CNI DEL in the netns, deletes it and quarantines the ports", func() {
			Expect(manager.Teardown(ctx, logger, "g1")).To(Succeed())
			Expect(host.cni.RemoveCallCount()).To(Equal(1))
			_, id, path, _ := host.cni.RemoveArgsForCall(0)
			Expect(id).To(Equal("g1"))
			Expect(path).To(Equal("/var/run/netns/cellagent-g1"))
			Expect(host.ports("g1")).To(BeEmpty())
			_, guid, ports := host.hostPorts.UnmapArgsForCall(0)
			Expect(guid).To(Equal("g1"))
			Expect(ports).To(Equal([]uint16{40000}))
			Expect(host.has("cellagent-g1")).To(BeFalse())
			Expect(statePath("g1")).NotTo(BeAnExistingFile())
			inUse, quarantined := manager.PortAllocator().Stats()
			Expect([]int{inUse, quarantined}).To(Equal([]int{0, 1}))
		})

		It("is a no-op the second time", func() {
			Expect(manager.Teardown(ctx, logger, "g1")).To(Succeed())
			Expect(manager.Teardown(ctx, logger, "g1")).To(Succeed())
			Expect(host.cni.RemoveCallCount()).To(Equal(1))
		})

		It("still frees IPAM and the host ports when the netns is gone", func() {
			Expect(host.namespaces.Delete(ctx, "cellagent-g1")).To(Succeed())
			Expect(manager.Teardown(ctx, logger, "g1")).To(Succeed())
			_, _, path, _ := host.cni.RemoveArgsForCall(0)
			Expect(path).To(BeEmpty())
			Expect(host.ports("g1")).To(BeEmpty())
			Expect(statePath("g1")).NotTo(BeAnExistingFile())
		})

		It("fails, keeping the ports, when the state file is gone and the table cannot be read", func() {
			Expect(os.Remove(statePath("g1"))).To(Succeed())
			host.hostPorts.MappedReturns(nil, errors.New("nft: permission denied"))
			host.hostPorts.MappedStub = nil
			err := manager.Teardown(ctx, logger, "g1")
			Expect(err).To(MatchError(ContainSubstring("nft: permission denied")))
			Expect(manager.PortAllocator().Owners()).To(ContainElement("g1"))
		})

		It("finds the host ports in the table when the state file is gone", func() {
			Expect(os.Remove(statePath("g1"))).To(Succeed())
			Expect(manager.Teardown(ctx, logger, "g1")).To(Succeed())
			Expect(host.hostPorts.UnmapCallCount()).To(Equal(1))
			_, _, ports := host.hostPorts.UnmapArgsForCall(0)
			Expect(ports).To(Equal([]uint16{40000}))
			Expect(host.has("cellagent-g1")).To(BeFalse())
		})

		It("keeps the state and the ports when CNI DEL fails, so a retry can finish", func() {
			host.cni.RemoveReturnsOnCall(0, errors.New("iptables locked"))
			err := manager.Teardown(ctx, logger, "g1")
			Expect(err).To(MatchError(ContainSubstring("cni del g1: iptables locked")))
			Expect(statePath("g1")).To(BeARegularFile())
			inUse, _ := manager.PortAllocator().Stats()
			Expect(inUse).To(Equal(1))

			Expect(manager.Teardown(ctx, logger, "g1")).To(Succeed())
			Expect(host.cni.RemoveCallCount()).To(Equal(2))
			_, _, path, _ := host.cni.RemoveArgsForCall(1)
			Expect(path).To(BeEmpty(), "the netns went in the first call")
			Expect(statePath("g1")).NotTo(BeAnExistingFile())
		})
	})

	Describe("after an agent restart", func() {
		var before network.Result

		JustBeforeEach(func() {
			var err error
			before, err = manager.Setup(ctx, logger, "g1", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			_, err = manager.Setup(ctx, logger, "g2", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			manager = newManager()
		})

		It("Restore gives back the same network and keeps the ports in use", func() {
			maps := host.hostPorts.MapCallCount()
			res, err := manager.Restore(logger, "g1")
			Expect(err).NotTo(HaveOccurred())
			Expect(res).To(Equal(before))
			Expect(host.hostPorts.MapCallCount()).To(Equal(maps+1), "the forwards are applied again (a flushed ruleset)")
			_, guid, ip, ports := host.hostPorts.MapArgsForCall(maps)
			Expect(guid).To(Equal("g1"))
			Expect(ip.Equal(before.IPv4)).To(BeTrue())
			Expect(ports).To(Equal(before.Ports))
			Expect(manager.PortAllocator().Owners()).To(ContainElement("g1"))

			res, err = manager.Setup(ctx, logger, "g3", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Ports[0].HostPort).To(Equal(uint16(40002)))
		})

		It("Restore fails with ErrNotFound for an unknown guid or a vanished netns", func() {
			_, err := manager.Restore(logger, "nope")
			Expect(err).To(MatchError(network.ErrNotFound))
			Expect(host.namespaces.Delete(ctx, "cellagent-g2")).To(Succeed())
			_, err = manager.Restore(logger, "g2")
			Expect(err).To(MatchError(ContainSubstring("netns cellagent-g2 of g2 is gone")))
		})

		It("CleanupOrphans tears down what keep rejects, found by state, netns, IPAM lease or host port forward", func() {
			// A netns, an IPAM lease and a forward left by containers whose
			// state is gone, and a netns of another network that must stay.
			host.mapped["g7"] = []uint16{40007}
			host.mapped["g8"] = nil // a chain left without map elements
			_, _ = host.namespaces.Create(ctx, "cellagent-g4")
			_, _ = host.namespaces.Create(ctx, "other-g5")
			ipamDir := filepath.Join(cfg.DataDir, "network", "ipam", "cellagent")
			Expect(os.MkdirAll(ipamDir, 0o700)).To(Succeed())
			Expect(os.WriteFile(filepath.Join(ipamDir, "10.255.0.9"), []byte("g6\r\neth0"), 0o600)).To(Succeed())
			Expect(os.WriteFile(filepath.Join(ipamDir, "last_reserved_ip.0"), []byte("10.255.0.9"), 0o600)).To(Succeed())

			Expect(manager.CleanupOrphans(ctx, logger, func(guid string) bool { return guid == "g1" })).To(Succeed())

			Expect(host.has("cellagent-g1")).To(BeTrue())
			Expect(statePath("g1")).To(BeARegularFile())
			Expect(host.has("cellagent-g2")).To(BeFalse())
			Expect(statePath("g2")).NotTo(BeAnExistingFile())
			Expect(host.has("cellagent-g4")).To(BeFalse())
			Expect(host.has("other-g5")).To(BeTrue())

			var removed []string
			for i := range host.cni.RemoveCallCount() {
				_, id, _, _ := host.cni.RemoveArgsForCall(i)
				removed = append(removed, id)
			}
			Expect(removed).To(ConsistOf("g2", "g4", "g6", "g7", "g8"))
			Expect(host.ports("g7")).To(BeEmpty())
			Expect(host.ports("g2")).To(BeEmpty())
			Expect(host.ports("g1")).To(Equal([]uint16{40000}))
			Expect(manager.PortAllocator().Owners()).To(Equal([]string{"g1"}))
			inUse, quarantined := manager.PortAllocator().Stats()
			Expect([]int{inUse, quarantined}).To(Equal([]int{1, 1}), "g2's port goes into quarantine")
		})
	})

	Context("in host mode", func() {
		BeforeEach(func() {
			cfg.Mode = network.ModeHost
		})

		It("maps each port to itself on 127.0.0.1, without a netns", func() {
			res, err := manager.Setup(ctx, logger, "g1", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			Expect(res.NetNSPath).To(BeEmpty())
			Expect(res.IPv4.String()).To(Equal("127.0.0.1"))
			Expect(res.Ports).To(Equal([]network.PortMapping{{ContainerPort: 8080, HostPort: 8080}}))
			Expect(host.cni.SetupCallCount()).To(BeZero())
			Expect(host.namespaces.CreateCallCount()).To(BeZero())

			_, err = manager.Setup(ctx, logger, "g2", []uint16{9090, 8080})
			Expect(err).To(MatchError(network.ErrPortInUse))

			restored, err := newManager().Restore(logger, "g1")
			Expect(err).NotTo(HaveOccurred())
			Expect(restored).To(Equal(res))

			Expect(manager.Teardown(ctx, logger, "g1")).To(Succeed())
			_, err = manager.Setup(ctx, logger, "g2", []uint16{9090, 8080})
			Expect(err).NotTo(HaveOccurred())
		})
	})
})
