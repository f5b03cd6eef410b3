package containerstore

import (
	"errors"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("capacity", func() {
	var c *capacity

	BeforeEach(func() {
		c = &capacity{total: executor.ResourceTotals{MemoryMB: 1024, DiskMB: 2048, Containers: 3}}
	})

	It("needs the memory plus the proxy overhead, the disk and one slot", func() {
		Expect(c.need(executor.Resources{MemoryMB: 128, DiskMB: 256, MaxPids: 10}, 32)).
			To(Equal(executor.ResourceTotals{MemoryMB: 160, DiskMB: 256, Containers: 1}))
	})

	It("reserves and releases", func() {
		n := executor.ResourceTotals{MemoryMB: 500, DiskMB: 1000, Containers: 1}
		Expect(c.reserve(n)).To(Succeed())
		Expect(c.available()).To(Equal(executor.ResourceTotals{MemoryMB: 524, DiskMB: 1048, Containers: 2}))
		Expect(c.reserve(n)).To(Succeed())
		Expect(c.available()).To(Equal(executor.ResourceTotals{MemoryMB: 24, DiskMB: 48, Containers: 1}))
		c.release(n)
		c.release(n)
		Expect(c.available()).To(Equal(c.total))
	})

	It("fits exactly what is free", func() {
		Expect(c.reserve(executor.ResourceTotals{MemoryMB: 1024, DiskMB: 2048, Containers: 3})).To(Succeed())
		Expect(c.available()).To(Equal(executor.ResourceTotals{}))
	})

	DescribeTable("refuses what does not fit, naming only the short resources, and takes nothing",
		func(n executor.ResourceTotals, message string, notMentioned []string) {
			Expect(c.reserve(executor.ResourceTotals{MemoryMB: 512, DiskMB: 1024, Containers: 2})).To(Succeed())
			before := c.available()
			err := c.reserve(n)
			Expect(err).To(HaveOccurred())
			Expect(errors.Is(err, executor.ErrInsufficientResources)).To(BeTrue())
			Expect(err.Error()).To(Equal(message))
			for _, word := range notMentioned {
				Expect(err.Error()).NotTo(ContainSubstring(word))
			}
			Expect(c.available()).To(Equal(before))
		},
		Entry("memory", executor.ResourceTotals{MemoryMB: 513, DiskMB: 1, Containers: 1},
			"insufficient resources: memory (need 513 MB, 512 MB free of 1024 MB)", []string{"disk", "containers"}),
		Entry("disk", executor.ResourceTotals{MemoryMB: 1, DiskMB: 1025, Containers: 1},
			"insufficient resources: disk (need 1025 MB, 1024 MB free of 2048 MB)", []string{"memory", "containers"}),
		Entry("slots", executor.ResourceTotals{MemoryMB: 1, DiskMB: 1, Containers: 2},
			"insufficient resources: containers (all 3 slots taken)", []string{"memory", "disk"}),
		Entry("memory and disk", executor.ResourceTotals{MemoryMB: 600, DiskMB: 2000, Containers: 1},
			"insufficient resources: memory (need 600 MB, 512 MB free of 1024 MB), disk (need 2000 MB, 1024 MB free of 2048 MB)", []string{"containers"}),
	)
})

// Issue 13 item 5: the pids limit applied only when a request set one.
var _ = Describe("maxPids", func() {
	s := &Store{cfg: Config{DefaultMaxPids: 1024}}
	It("is the cell's default for a request without max_pids", func() {
		Expect(s.maxPids(executor.Resources{MemoryMB: 64})).To(BeEquivalentTo(1024))
	})
	It("is the request's own when it sets one", func() {
		Expect(s.maxPids(executor.Resources{MemoryMB: 64, MaxPids: 50})).To(BeEquivalentTo(50))
	})
})
