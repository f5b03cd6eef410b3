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

	// busy writes a /proc/stat whose counters move from first to second
	// while Busy measures.
	busy := func(first, second string) bool {
		path := filepath.Join(GinkgoT().TempDir(), "stat")
		Expect(os.WriteFile(path, []byte(first), 0o644)).To(Succeed())
		written := make(chan struct{})
		defer func() { <-written }()
		go func() {
			defer GinkgoRecover()
			defer close(written)
			time.Sleep(20 * time.Millisecond)
			Expect(os.WriteFile(path+".new", []byte(second), 0o644)).To(Succeed())
			Expect(os.Rename(path+".new", path)).To(Succeed())
		}()
		return network.ProcStatCPU{Path: path, Window: 300 * time.Millisecond}.Busy(context.Background())
	}

	It("is busy when less than half the time was idle", func() {
		Expect(busy("cpu  100 0 100 1000 0 0 0 0 0 0\nintr 1\n", "cpu  160 0 120 1010 0 0 0 0 0 0\nintr 1\n")).To(BeTrue(), "10 idle of 90")
		Expect(busy("cpu  100 0 100 1000 0 0 0 0 0 0\n", "cpu  110 0 100 1080 10 0 0 0 0 0\n")).To(BeFalse(), "90 idle of 100")
	})

	It("is not busy when it cannot tell", func() {
		Expect(network.ProcStatCPU{Path: "/nonexistent/stat", Window: time.Millisecond}.Busy(context.Background())).To(BeFalse())
		Expect(busy("cpu  1 1 1 1 1 1 1 1 0 0\n", "cpu  1 1 1 1 1 1 1 1 0 0\n")).To(BeFalse(), "no tick passed")
		Expect(busy("garbage\n", "cpu  1 1 1 1 1 1 1 1 0 0\n")).To(BeFalse())
	})
})
