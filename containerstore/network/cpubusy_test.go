package network_test

import (
	"context"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore/network"
)

var _ = Describe("ProcStatCPU", func() {
	It("reads idle and iowait against the first eight fields (guest is already in user)", func() {
		idle, total, err := network.ParseCPULine("cpu  100 5 50 800 20 1 2 3 40 4\n")
		Expect(err).NotTo(HaveOccurred())
		Expect(idle).To(Equal(uint64(820)))
		Expect(total).To(Equal(uint64(981)))
		_, _, err = network.ParseCPULine("cpu0 1 2 3 4 5 6 7 8\n")
		Expect(err).To(MatchError(ContainSubstring("not an aggregate cpu line")))
		_, _, err = network.ParseCPULine("cpu 1 2 x 4 5\n")
		Expect(err).To(MatchError(ContainSubstring("field 3")))
	})

	It("is busy when less than half the time between two readings was idle", func() {
		Expect(network.BusyBetween(1000, 1200, 1010, 1290)).To(BeTrue(), "10 idle of 90")
		Expect(network.BusyBetween(1000, 1200, 1040, 1290)).To(BeTrue(), "40 idle of 90")
		Expect(network.BusyBetween(1000, 1200, 1045, 1290)).To(BeFalse(), "45 idle of 90: half")
		Expect(network.BusyBetween(1000, 1200, 1090, 1300)).To(BeFalse(), "90 idle of 100")
	})

	It("is not busy when it cannot tell", func() {
		Expect(network.BusyBetween(1000, 1200, 1000, 1200)).To(BeFalse(), "no tick passed")
		Expect(network.BusyBetween(1000, 1200, 900, 1300)).To(BeFalse(), "idle went back")
		Expect(network.BusyBetween(1000, 1200, 1300, 1250)).To(BeFalse(), "more idle than time")
		Expect(network.ProcStatCPU{Path: "/nonexistent/stat", Window: time.Millisecond}.Busy(context.Background())).To(BeFalse())
		garbage := filepath.Join(GinkgoT().TempDir(), "stat")
		Expect(os.WriteFile(garbage, []byte("garbage\n"), 0o644)).To(Succeed())
		Expect(network.ProcStatCPU{Path: garbage, Window: time.Millisecond}.Busy(context.Background())).To(BeFalse())
	})

	It("answers the idle share it measured, or that it cannot tell", func() {
		share, ok := network.ProcStatCPU{Window: 30 * time.Millisecond}.IdleShare(context.Background())
		Expect(ok).To(BeTrue())
		Expect(share).To(BeNumerically(">=", 0))
		Expect(share).To(BeNumerically("<=", 1))
		_, ok = network.ProcStatCPU{Path: "/nonexistent/stat", Window: time.Millisecond}.IdleShare(context.Background())
		Expect(ok).To(BeFalse())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, ok = network.ProcStatCPU{Window: time.Hour}.IdleShare(ctx)
		Expect(ok).To(BeFalse(), "an ended context")
	})

	It("measures this host", func() {
		// Whatever the answer, it comes after the window and without a
		// failure to read (a read error answers false at once).
		start := time.Now()
		network.ProcStatCPU{Window: 30 * time.Millisecond}.Busy(context.Background())
		Expect(time.Since(start)).To(BeNumerically(">=", 30*time.Millisecond))
	})
})
