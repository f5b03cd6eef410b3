package network_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	gocni "github.com/containerd/go-cni"
	"github.com/mdlayher/netlink"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/tedsuo/ifrit"
	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/containerstore/network"
)

// pinned records what a Manager pins: "dev ip" -> mac.
type pinned struct {
	mu      sync.Mutex
	entries map[string]string
	pins    int
	failPin error
}

func (p *pinned) Pin(dev string, ip net.IP, mac net.HardwareAddr) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pins++
	if p.failPin != nil {
		return p.failPin
	}
	p.entries[dev+" "+ip.String()] = mac.String()
	return nil
}

func (p *pinned) Unpin(dev string, ip net.IP) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.entries, dev+" "+ip.String())
	return nil
}

func (p *pinned) snapshot() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]string{}
	for k, v := range p.entries {
		out[k] = v
	}
	return out
}

var _ = Describe("Neighbours", func() {
	var (
		logger  *lagertest.TestLogger
		ctx     context.Context
		host    *fakeHost
		pins    *pinned
		cfg     network.Config
		manager *network.Manager
		mac     string
	)

	BeforeEach(func() {
		logger = lagertest.NewTestLogger("test")
		ctx = context.Background()
		host = newFakeHost()
		pins = &pinned{entries: map[string]string{}}
		cfg = network.DefaultConfig()
		cfg.DataDir = GinkgoT().TempDir()
		cfg.HostPortRange = "40000-40009"
		cfg.ExternalIP = "192.0.2.10"
		mac = "02:42:0a:ff:00:02"
		setup := host.cni.SetupStub
		host.cni.SetupStub = func(ctx context.Context, id, path string, opts ...gocni.NamespaceOpts) (*gocni.Result, error) {
			res, err := setup(ctx, id, path, opts...)
			if err == nil {
				res.Interfaces["eth0"].Mac = mac
			}
			return res, err
		}
	})

	JustBeforeEach(func() {
		var err error
		manager, err = network.NewWithDeps(logger, cfg, withNeighbours(host.deps(), pins))
		Expect(err).NotTo(HaveOccurred())
	})

	It("pins the container's address to its MAC on the bridge at set-up and unpins it at teardown", func() {
		res, err := manager.Setup(ctx, logger, "g1", []uint16{8080})
		Expect(err).NotTo(HaveOccurred())
		Expect(pins.snapshot()).To(Equal(map[string]string{"cellagent0 " + res.IPv4.String(): mac}))

		Expect(manager.Teardown(ctx, logger, "g1")).To(Succeed())
		Expect(pins.snapshot()).To(BeEmpty())
	})

	It("pins a restored container's entry again", func() {
		res, err := manager.Setup(ctx, logger, "g1", []uint16{8080})
		Expect(err).NotTo(HaveOccurred())
		pins.entries = map[string]string{} // the bridge was recreated

		restarted, err := network.NewWithDeps(logger, cfg, withNeighbours(host.deps(), pins))
		Expect(err).NotTo(HaveOccurred())
		_, err = restarted.Restore(logger, "g1")
		Expect(err).NotTo(HaveOccurred())
		Expect(pins.snapshot()).To(Equal(map[string]string{"cellagent0 " + res.IPv4.String(): mac}))
	})

	Context("when the CNI result has no MAC", func() {
		BeforeEach(func() { mac = "" })

		It("sets the network up without pinning", func() {
			_, err := manager.Setup(ctx, logger, "g1", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			Expect(pins.pins).To(BeZero())
			Expect(logger).To(gbytes.Say("failed-to-pin-neighbour"))
		})
	})

	Context("when pinning fails", func() {
		BeforeEach(func() { pins.failPin = errors.New("boom") })

		It("still sets the network up (ARP still resolves) and restore does not pin", func() {
			_, err := manager.Setup(ctx, logger, "g1", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			Expect(pins.pins).To(Equal(1))
			_, err = manager.Restore(logger, "g1")
			Expect(err).NotTo(HaveOccurred())
			Expect(pins.pins).To(Equal(1), "no MAC recorded, nothing to pin again")
		})
	})

	Context("with a pool of prepared namespaces", func() {
		var clk *fakeclock.FakeClock

		BeforeEach(func() {
			clk = fakeclock.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
			cfg.Clock = clk
			cfg.PoolSize = 1
		})

		It("pins a slot's address when a container claims it, not before", func() {
			process := ifrit.Invoke(manager.PoolRunner(logger))
			defer func() {
				process.Signal(os.Interrupt)
				Eventually(process.Wait()).Should(Receive(BeNil()))
			}()
			Eventually(func() int {
				clk.Increment(time.Second)
				r, _ := manager.PoolStats()
				return r
			}).Should(Equal(1))
			Expect(pins.snapshot()).To(BeEmpty(), "a slot nobody claimed is not pinned")
			setups := host.cni.SetupCallCount()

			res, err := manager.Setup(ctx, logger, "g1", []uint16{8080})
			Expect(err).NotTo(HaveOccurred())
			Expect(host.cni.SetupCallCount()).To(Equal(setups), "the pooled slot, no CNI ADD")
			Expect(pins.snapshot()).To(Equal(map[string]string{"cellagent0 " + res.IPv4.String(): mac}))
			Expect(manager.Teardown(ctx, logger, "g1")).To(Succeed())
			Expect(pins.snapshot()).NotTo(HaveKey("cellagent0 " + res.IPv4.String()))
		})
	})

	It("encodes a permanent IPv4 ndmsg with destination and lladdr", func() {
		hw, _ := net.ParseMAC("02:42:0a:ff:00:02")
		b, err := network.EncodeNeigh(7, net.IPv4(10, 255, 0, 2).To4(), hw)
		Expect(err).NotTo(HaveOccurred())
		Expect(len(b)).To(BeNumerically(">", unix.SizeofNdMsg))
		Expect(b[0]).To(Equal(byte(unix.AF_INET)))
		Expect(binary.NativeEndian.Uint32(b[4:8])).To(Equal(uint32(7)))
		Expect(binary.NativeEndian.Uint16(b[8:10])).To(Equal(uint16(unix.NUD_PERMANENT)))
		ad, err := netlink.NewAttributeDecoder(b[unix.SizeofNdMsg:])
		Expect(err).NotTo(HaveOccurred())
		got := map[uint16][]byte{}
		for ad.Next() {
			got[ad.Type()] = ad.Bytes()
		}
		Expect(ad.Err()).NotTo(HaveOccurred())
		Expect(got).To(Equal(map[uint16][]byte{unix.NDA_DST: {10, 255, 0, 2}, unix.NDA_LLADDR: []byte(hw)}))
	})

	It("finds an interface's index by name as the link table has it, and refuses an unknown one", func() {
		lo, err := net.InterfaceByName("lo")
		Expect(err).NotTo(HaveOccurred())
		Expect(network.IfIndex("lo")).To(Equal(lo.Index))
		_, err = network.IfIndex("nosuchdev0")
		Expect(err).To(MatchError(unix.ENODEV))
	})
})

func withNeighbours(d network.Deps, n network.Neighbours) network.Deps {
	d.Neighbours = n
	return d
}
