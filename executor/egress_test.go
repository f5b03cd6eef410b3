package executor_test

import (
	"encoding/json"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("EgressRule JSON", func() {
	It("decodes a rule", func() {
		var rules []executor.EgressRule
		Expect(json.Unmarshal([]byte(`[{"protocol":"tcp","destinations":["10.0.0.0/8"],"ports":"443","log":true}]`), &rules)).To(Succeed())
		Expect(rules).To(Equal([]executor.EgressRule{{Protocol: "tcp", Destinations: []string{"10.0.0.0/8"}, Ports: "443", Log: true}}))
	})

	It("refuses an unknown field even where the decoder allows them", func() {
		var rules []executor.EgressRule
		err := json.Unmarshal([]byte(`[{"protocol":"tcp","destinations":["10.0.0.0/8"],"port":"443"}]`), &rules)
		Expect(err).To(MatchError(ContainSubstring(`unknown field "port"`)))
	})
})
