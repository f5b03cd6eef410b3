package network_test

import (
	"os"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore/network"
)

var _ = Describe("PortAllocator", func() {
	var (
		clk        *fakeclock.FakeClock
		cfg        network.PortAllocatorConfig
		alloc      *network.PortAllocator
		quarantine = 3 * time.Minute
	)

	newAllocator := func() *network.PortAllocator {
		a, err := network.NewPortAllocator(cfg)
		Expect(err).NotTo(HaveOccurred())
		return a
	}

	BeforeEach(func() {
		clk = fakeclock.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
		cfg = network.PortAllocatorConfig{First: 40000, Last: 40003, Quarantine: quarantine, Clock: clk}
	})

	JustBeforeEach(func() {
		alloc = newAllocator()
	})

	It("hands out ports round-robin, so a released port comes last", func() {
		p, err := alloc.Allocate("a", 1)
		Expect(err).NotTo(HaveOccurred())
		Expect(p).To(Equal([]uint16{40000}))
		_, err = alloc.Release("a")
		Expect(err).NotTo(HaveOccurred())
		clk.Increment(quarantine)

		p, err = alloc.Allocate("b", 3)
		Expect(err).NotTo(HaveOccurred())
		Expect(p).To(Equal([]uint16{40001, 40002, 40003}))
		p, err = alloc.Allocate("c", 1)
		Expect(err).NotTo(HaveOccurred())
		Expect(p).To(Equal([]uint16{40000}))
	})

	It("holds a released port in quarantine for the period, then hands it out", func() {
		_, err := alloc.Allocate("a", 2)
		Expect(err).NotTo(HaveOccurred())
		_, err = alloc.Allocate("b", 2)
		Expect(err).NotTo(HaveOccurred())
		released, err := alloc.Release("a")
		Expect(err).NotTo(HaveOccurred())
		Expect(released).To(Equal([]uint16{40000, 40001}))

		_, err = alloc.Allocate("c", 1)
		Expect(err).To(MatchError(network.ErrInsufficientPorts))
		Expect(err).To(MatchError("insufficient host ports: no free host ports in 40000-40003 for 1 more (2 in use, 2 in quarantine)"))

		clk.Increment(quarantine - time.Second)
		_, err = alloc.Allocate("c", 1)
		Expect(err).To(MatchError(network.ErrInsufficientPorts))

		clk.Increment(time.Second)
		p, err := alloc.Allocate("c", 2)
		Expect(err).NotTo(HaveOccurred())
		Expect(p).To(ConsistOf(uint16(40000), uint16(40001)))
	})

	It("allocates all or nothing", func() {
		_, err := alloc.Allocate("a", 3)
		Expect(err).NotTo(HaveOccurred())
		_, err = alloc.Allocate("b", 2)
		Expect(err).To(MatchError(ContainSubstring("for 2 more (3 in use, 0 in quarantine)")))
		inUse, quarantined := alloc.Stats()
		Expect(inUse).To(Equal(3))
		Expect(quarantined).To(Equal(0))
		Expect(alloc.Owners()).To(Equal([]string{"a"}))
	})

	It("frees ports at once on Forget", func() {
		_, err := alloc.Allocate("a", 4)
		Expect(err).NotTo(HaveOccurred())
		Expect(alloc.Forget("a")).To(Succeed())
		p, err := alloc.Allocate("b", 4)
		Expect(err).NotTo(HaveOccurred())
		Expect(p).To(HaveLen(4))
	})

	Context("with quarantine 0", func() {
		BeforeEach(func() { cfg.Quarantine = 0 })

		It("reuses a released port at once", func() {
			_, err := alloc.Allocate("a", 3)
			Expect(err).NotTo(HaveOccurred())
			_, err = alloc.Allocate("b", 1)
			Expect(err).NotTo(HaveOccurred())
			_, err = alloc.Release("b")
			Expect(err).NotTo(HaveOccurred())
			p, err := alloc.Allocate("c", 1)
			Expect(err).NotTo(HaveOccurred())
			Expect(p).To(Equal([]uint16{40003}))
		})
	})

	Describe("MarkInUse", func() {
		It("claims ports, idempotently, and refuses another owner's", func() {
			Expect(alloc.MarkInUse("a", []uint16{40001, 8080})).To(Succeed())
			Expect(alloc.MarkInUse("a", []uint16{40001})).To(Succeed())
			err := alloc.MarkInUse("b", []uint16{40002, 8080})
			Expect(err).To(MatchError(network.ErrPortInUse))
			Expect(err).To(MatchError(ContainSubstring("8080 is held by a")))
			Expect(alloc.Owners()).To(Equal([]string{"a"}))

			p, err := alloc.Allocate("c", 3)
			Expect(err).NotTo(HaveOccurred())
			Expect(p).NotTo(ContainElement(uint16(40001)))
			inUse, _ := alloc.Stats()
			Expect(inUse).To(Equal(4), "8080 is outside the range and not counted")
		})
	})

	Context("persisted", func() {
		BeforeEach(func() {
			cfg.Path = filepath.Join(GinkgoT().TempDir(), "network", "ports.json")
		})

		It("keeps allocations, quarantine and the round-robin position across a restart", func() {
			_, err := alloc.Allocate("a", 1)
			Expect(err).NotTo(HaveOccurred())
			_, err = alloc.Allocate("b", 1)
			Expect(err).NotTo(HaveOccurred())
			_, err = alloc.Release("a")
			Expect(err).NotTo(HaveOccurred())

			restarted := newAllocator()
			Expect(restarted.Owners()).To(Equal([]string{"b"}))
			inUse, quarantined := restarted.Stats()
			Expect([]int{inUse, quarantined}).To(Equal([]int{1, 1}))

			p, err := restarted.Allocate("c", 2)
			Expect(err).NotTo(HaveOccurred())
			Expect(p).To(Equal([]uint16{40002, 40003}))
			_, err = restarted.Allocate("d", 1)
			Expect(err).To(MatchError(ContainSubstring("(3 in use, 1 in quarantine)")))

			clk.Increment(quarantine)
			p, err = newAllocator().Allocate("d", 1)
			Expect(err).NotTo(HaveOccurred())
			Expect(p).To(Equal([]uint16{40000}))
		})

		It("fails on a corrupt file", func() {
			Expect(os.MkdirAll(filepath.Dir(cfg.Path), 0o700)).To(Succeed())
			Expect(os.WriteFile(cfg.Path, []byte("{"), 0o600)).To(Succeed())
			_, err := network.NewPortAllocator(cfg)
			Expect(err).To(MatchError(ContainSubstring("parse port allocations")))
		})
	})
})
