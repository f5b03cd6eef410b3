package network_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"

	"github.com/cellagent/cellagent/containerstore/network"
	"github.com/cellagent/cellagent/executor"
)

// markedTable models the agent's nft table as Held reads it: the marks
// the last Map and Filter of each guid left.
type markedTable struct {
	mu   sync.Mutex // guards held
	held map[string]network.Held
}

func (t *markedTable) wire(h *fakeHost) {
	h.hostPorts.MapStub = func(_ context.Context, guid string, ip net.IP, ports []network.PortMapping) error {
		t.mu.Lock()
		defer t.mu.Unlock()
		e := t.held[guid]
		e.HostPorts = nil
		for _, p := range ports {
			e.HostPorts = append(e.HostPorts, p.HostPort)
		}
		slices.Sort(e.HostPorts)
		e.ForwardMark = network.ForwardMark(guid, ip, ports)
		t.held[guid] = e
		return nil
	}
	h.hostPorts.FilterStub = func(_ context.Context, guid string, ip net.IP, spec network.FilterSpec) error {
		t.mu.Lock()
		defer t.mu.Unlock()
		e := t.held[guid]
		e.FilterMark = network.FilterMark(guid, ip, spec)
		t.held[guid] = e
		return nil
	}
	h.hostPorts.HeldStub = func(context.Context) (map[string]network.Held, error) {
		t.mu.Lock()
		defer t.mu.Unlock()
		out := map[string]network.Held{}
		for g, e := range t.held {
			out[g] = e
		}
		return out, nil
	}
}

func (t *markedTable) set(guid string, change func(*network.Held)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.held[guid]
	change(&e)
	t.held[guid] = e
}

var _ = Describe("Restore after an agent restart", func() {
	var (
		logger *lagertest.TestLogger
		ctx    context.Context
		host   *fakeHost
		table  *markedTable
		cfg    network.Config
	)

	newManager := func() *network.Manager {
		m, err := network.NewWithDeps(logger, cfg, host.deps())
		Expect(err).NotTo(HaveOccurred())
		return m
	}
	// calls answers how many Map and Filter calls were made for guid
	// since the counts' index from.
	calls := func(guid string, mapsFrom, filtersFrom int) (maps, filters int) {
		for i := mapsFrom; i < host.hostPorts.MapCallCount(); i++ {
			if _, g, _, _ := host.hostPorts.MapArgsForCall(i); g == guid {
				maps++
			}
		}
		for i := filtersFrom; i < host.hostPorts.FilterCallCount(); i++ {
			if _, g, _, _ := host.hostPorts.FilterArgsForCall(i); g == guid {
				filters++
			}
		}
		return maps, filters
	}

	var m0, f0 int
	BeforeEach(func() {
		logger = lagertest.NewTestLogger("test")
		ctx = context.Background()
		host = newFakeHost()
		table = &markedTable{held: map[string]network.Held{}}
		table.wire(host)
		cfg = network.DefaultConfig()
		cfg.DataDir = GinkgoT().TempDir()
		cfg.HostPortRange = "40000-40009"
		cfg.ExternalIP = "192.0.2.10"
		m := newManager()
		for _, g := range []string{"g1", "g2", "g3"} {
			_, err := m.Setup(ctx, logger, g, []uint16{8080, 61001})
			Expect(err).NotTo(HaveOccurred())
		}
		_, err := m.Setup(ctx, logger, "noports", nil)
		Expect(err).NotTo(HaveOccurred())
		_, err = m.SetEgress(ctx, logger, "g2", []executor.EgressRule{{Protocol: "tcp", Destinations: []string{"198.51.100.7"}, Ports: "443"}})
		Expect(err).NotTo(HaveOccurred())
		m0, f0 = host.hostPorts.MapCallCount(), host.hostPorts.FilterCallCount()
	})

	It("sends nothing to the kernel for what the table still holds, and reads the table once", func() {
		m := newManager()
		for _, g := range []string{"g1", "g2", "g3", "noports"} {
			_, err := m.Restore(logger, g)
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(host.hostPorts.MapCallCount()).To(Equal(m0))
		Expect(host.hostPorts.FilterCallCount()).To(Equal(f0))
		Expect(host.hostPorts.HeldCallCount()).To(Equal(1))
	})

	It("re-applies every container's forwards and filter when the table is gone (nft flush ruleset)", func() {
		table.held = map[string]network.Held{}
		m := newManager()
		for _, g := range []string{"g1", "g2", "g3"} {
			_, err := m.Restore(logger, g)
			Expect(err).NotTo(HaveOccurred())
			maps, filters := calls(g, m0, f0)
			Expect([]int{maps, filters}).To(Equal([]int{1, 1}), g)
		}
		_, err := m.Restore(logger, "noports")
		Expect(err).NotTo(HaveOccurred())
		maps, filters := calls("noports", m0, f0)
		Expect([]int{maps, filters}).To(Equal([]int{0, 1}), "a container without ports has only a filter")
		// The filter re-applied is the stored one, the changed egress rules included.
		for i := f0; i < host.hostPorts.FilterCallCount(); i++ {
			if _, g, _, spec := host.hostPorts.FilterArgsForCall(i); g == "g2" {
				Expect(spec.Egress).To(ContainElement(executor.EgressRule{Protocol: "tcp", Destinations: []string{"198.51.100.7"}, Ports: "443"}))
			}
		}
	})

	It("re-applies only the part whose mark differs or whose host ports are missing", func() {
		// g1's filter is an older one (the agent died between installing
		// new rules and saving them); g2 lost a forward.
		table.set("g1", func(h *network.Held) { h.FilterMark = "cellagent:0123" })
		table.set("g2", func(h *network.Held) { h.HostPorts = h.HostPorts[:1] })
		table.set("g3", func(h *network.Held) { h.ForwardMark = "" })
		m := newManager()
		for _, g := range []string{"g1", "g2", "g3", "noports"} {
			_, err := m.Restore(logger, g)
			Expect(err).NotTo(HaveOccurred())
		}
		for g, want := range map[string][]int{"g1": {0, 1}, "g2": {1, 0}, "g3": {1, 0}, "noports": {0, 0}} {
			maps, filters := calls(g, m0, f0)
			Expect([]int{maps, filters}).To(Equal(want), g)
		}
	})

	It("re-applies everything when the table cannot be read", func() {
		host.hostPorts.HeldStub = nil
		host.hostPorts.HeldReturns(nil, errors.New("netlink: operation not permitted"))
		m := newManager()
		for _, g := range []string{"g1", "noports"} {
			_, err := m.Restore(logger, g)
			Expect(err).NotTo(HaveOccurred())
		}
		maps, filters := calls("g1", m0, f0)
		Expect([]int{maps, filters}).To(Equal([]int{1, 1}))
		maps, filters = calls("noports", m0, f0)
		Expect([]int{maps, filters}).To(Equal([]int{0, 1}))
		Expect(logger).To(gbytes.Say("failed-to-read-table"))
	})
})
