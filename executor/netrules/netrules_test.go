package netrules_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/executor/netrules"
)

var _ = Describe("ValidateEgressRules", func() {
	DescribeTable("canonical form",
		func(in, want executor.EgressRule) {
			out, err := netrules.ValidateEgressRules("egress_rules", []executor.EgressRule{in})
			Expect(err).NotTo(HaveOccurred())
			Expect(out).To(Equal([]executor.EgressRule{want}))
		},
		Entry("overlapping ports and destinations are merged",
			executor.EgressRule{Protocol: "TCP", Destinations: []string{"10.0.0.0/8", "10.1.0.0/16", "1.2.3.4-1.2.3.9", "1.2.3.10"}, Ports: "443, 80,8000-8010,8005"},
			executor.EgressRule{Protocol: "tcp", Destinations: []string{"1.2.3.4-1.2.3.10", "10.0.0.0-10.255.255.255"}, Ports: "80,443,8000-8010"}),
		Entry("a single address", executor.EgressRule{Protocol: "icmp", Destinations: []string{"8.8.8.8"}, Log: true},
			executor.EgressRule{Protocol: "icmp", Destinations: []string{"8.8.8.8"}, Log: true}),
		Entry("all ports", executor.EgressRule{Protocol: "udp", Destinations: []string{"0.0.0.0/0"}},
			executor.EgressRule{Protocol: "udp", Destinations: []string{"0.0.0.0-255.255.255.255"}}),
	)

	DescribeTable("refused with a message naming the field",
		func(in executor.EgressRule, msg string) {
			_, err := netrules.ValidateEgressRules("egress_rules", []executor.EgressRule{in})
			Expect(err).To(MatchError(ContainSubstring(msg)))
		},
		Entry("bad CIDR", executor.EgressRule{Protocol: "tcp", Destinations: []string{"10.0.0.0/33"}}, `egress_rules[0].destinations[0]: "10.0.0.0/33": not an IPv4 CIDR`),
		Entry("host bits", executor.EgressRule{Protocol: "tcp", Destinations: []string{"10.0.0.1/8"}}, "did you mean 10.0.0.0/8"),
		Entry("backwards range", executor.EgressRule{Protocol: "tcp", Destinations: []string{"1.2.3.9-1.2.3.4"}}, "ends before it starts"),
		Entry("IPv6", executor.EgressRule{Protocol: "tcp", Destinations: []string{"::1"}}, "not an IPv4 address"),
		Entry("no destination", executor.EgressRule{Protocol: "all"}, "at least one address"),
		Entry("bad protocol", executor.EgressRule{Protocol: "sctp", Destinations: []string{"1.2.3.4"}}, "must be tcp, udp, icmp or all"),
		Entry("port 0", executor.EgressRule{Protocol: "tcp", Destinations: []string{"1.2.3.4"}, Ports: "0"}, "port 0"),
		Entry("port too big", executor.EgressRule{Protocol: "tcp", Destinations: []string{"1.2.3.4"}, Ports: "70000"}, "not a port"),
		Entry("ports on icmp", executor.EgressRule{Protocol: "icmp", Destinations: []string{"1.2.3.4"}, Ports: "80"}, "ports need protocol tcp or udp"),
	)
})

var _ = Describe("ValidatePolicies", func() {
	It("refuses a policy without ports or source", func() {
		_, err := netrules.ValidatePolicies("network_policies", []executor.NetworkPolicy{{Protocol: "icmp"}})
		Expect(err).To(MatchError(And(ContainSubstring("network_policies[0].protocol"), ContainSubstring("source_log_guid"), ContainSubstring("needs ports"))))
	})
})
