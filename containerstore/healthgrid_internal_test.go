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
