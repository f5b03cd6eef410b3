package config_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
)

var _ = Describe("Decode of a file with a stray closing bracket", func() {
	DescribeTable("refuses what follows the value",
		func(in string) {
			cfg := config.DefaultConfig()
			Expect(config.Decode([]byte(in), &cfg)).NotTo(Succeed())
		},
		Entry("}", `{"zone":"z2"}}`),
		Entry("]", `{"zone":"z2"}]`),
	)
})
