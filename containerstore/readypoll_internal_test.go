package containerstore

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("readyPoll", func() {
	It("waits an eighth of the time waited so far, between 2 ms and 100 ms", func() {
		Expect(readyPoll(0)).To(Equal(2 * time.Millisecond))
		Expect(readyPoll(8 * time.Millisecond)).To(Equal(2 * time.Millisecond))
		Expect(readyPoll(80 * time.Millisecond)).To(Equal(10 * time.Millisecond))
		Expect(readyPoll(time.Second)).To(Equal(100 * time.Millisecond))
		Expect(readyPoll(time.Minute)).To(Equal(100 * time.Millisecond))
	})

	It("finds a quick instance within an eighth of its start, with attempts growing like the logarithm", func() {
		attempts := func(until time.Duration) (n int, late time.Duration) {
			var t time.Duration
			for n = 1; t < until; n++ {
				t += readyPoll(t)
			}
			return n, t - until
		}
		n, late := attempts(20 * time.Millisecond)
		Expect(late).To(BeNumerically("<=", 20*time.Millisecond/8+time.Millisecond))
		Expect(n).To(BeNumerically("<=", 12))
		n, _ = attempts(500 * time.Millisecond)
		Expect(n).To(BeNumerically("<=", 40))
		n, _ = attempts(2 * time.Second)
		Expect(n).To(BeNumerically("<=", 60))
	})
})
