package containerstore

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = DescribeTable("healthGrid puts every instance's health rounds on whole seconds",
	func(in, want time.Time) { Expect(healthGrid(in)).To(Equal(want)) },
	Entry("on the grid already", time.Date(2026, 12, 2, 12, 0, 30, 0, time.UTC), time.Date(2026, 12, 2, 12, 0, 30, 0, time.UTC)),
	Entry("just past a second", time.Date(2026, 12, 2, 12, 0, 30, 1, time.UTC), time.Date(2026, 12, 2, 12, 0, 31, 0, time.UTC)),
	Entry("just before a second", time.Date(2026, 12, 2, 12, 0, 30, 999999999, time.UTC), time.Date(2026, 12, 2, 12, 0, 31, 0, time.UTC)),
)

var _ = It("healthGrid keeps the monotonic clock reading, so rounds do not follow wall clock steps", func() {
	Expect(healthGrid(time.Now().Add(300 * time.Millisecond)).String()).To(ContainSubstring("m=+"))
})

var _ = DescribeTable("nextHealthRound skips the rounds a late goroutine missed",
	func(late time.Duration, want time.Duration) {
		next := time.Date(2026, 12, 2, 12, 0, 30, 0, time.UTC)
		Expect(nextHealthRound(next, next.Add(late), 30*time.Second)).To(Equal(next.Add(want)))
	},
	Entry("on time", time.Duration(0), 30*time.Second),
	Entry("late within the interval", 10*time.Second, 30*time.Second),
	Entry("exactly one interval late", 30*time.Second, 60*time.Second),
	Entry("an hour late: one round, not 120", time.Hour+5*time.Second, time.Hour+30*time.Second),
)
