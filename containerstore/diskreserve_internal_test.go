package containerstore

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// Issue 13 item 6: the agent keeps a reserve under data_dir.
var _ = Describe("diskLow", func() {
	It("is low when data_dir's filesystem has less free than the reserve", func() {
		s := &Store{cfg: Config{DataDir: GinkgoT().TempDir(), DiskReserveMB: 1 << 40}}
		free, low := s.diskLow()
		Expect(free).To(BeNumerically(">", 0))
		Expect(low).To(BeTrue())
	})
	It("is never low without a reserve", func() {
		s := &Store{cfg: Config{DataDir: GinkgoT().TempDir()}}
		_, low := s.diskLow()
		Expect(low).To(BeFalse())
	})
})
