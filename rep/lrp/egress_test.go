package lrp_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/rep/lrp"
	"github.com/cellagent/cellagent/rep/models"
)

var _ = Describe("EgressRules", func() {
	dest := []string{"10.0.0.0/24"}

	DescribeTable("maps each BBS rule form onto the agent's rule exactly",
		func(in *models.SecurityGroupRule, want executor.EgressRule) {
			got, err := lrp.EgressRules([]*models.SecurityGroupRule{in})
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal([]executor.EgressRule{want}))
		},
		Entry("tcp with a list of ports", &models.SecurityGroupRule{Protocol: "tcp", Destinations: dest, Ports: []uint32{80, 443}},
			executor.EgressRule{Protocol: "tcp", Destinations: dest, Ports: "80,443"}),
		Entry("udp with a port range", &models.SecurityGroupRule{Protocol: "udp", Destinations: dest,
			PortRange: &models.PortRange{Start: 53, End: 60}},
			executor.EgressRule{Protocol: "udp", Destinations: dest, Ports: "53-60"}),
		Entry("a one-port range", &models.SecurityGroupRule{Protocol: "tcp", Destinations: dest,
			PortRange: &models.PortRange{Start: 5432, End: 5432}},
			executor.EgressRule{Protocol: "tcp", Destinations: dest, Ports: "5432-5432"}),
		Entry("all, logged", &models.SecurityGroupRule{Protocol: "all", Destinations: dest, Log: true},
			executor.EgressRule{Protocol: "all", Destinations: dest, Log: true}),
		Entry("icmp of every type and code", &models.SecurityGroupRule{Protocol: "icmp", Destinations: dest,
			IcmpInfo: &models.ICMPInfo{Type: -1, Code: -1}},
			executor.EgressRule{Protocol: "icmp", Destinations: dest}),
		Entry("address, range and comma-separated destinations", &models.SecurityGroupRule{Protocol: "all",
			Destinations: []string{"10.0.0.1", "10.0.1.0-10.0.1.9", "192.168.0.0/16,172.16.0.1"}},
			executor.EgressRule{Protocol: "all", Destinations: []string{"10.0.0.1", "10.0.1.0-10.0.1.9", "192.168.0.0/16", "172.16.0.1"}}),
		Entry("annotations, which set nothing", &models.SecurityGroupRule{Protocol: "tcp", Destinations: dest, Ports: []uint32{443},
			Annotations: []string{"security_group_id:abc"}},
			executor.EgressRule{Protocol: "tcp", Destinations: dest, Ports: "443"}),
	)

	DescribeTable("refuses, by rule and field, what it cannot map without widening",
		func(in *models.SecurityGroupRule, reason string) {
			ok := &models.SecurityGroupRule{Protocol: "all", Destinations: dest}
			got, err := lrp.EgressRules([]*models.SecurityGroupRule{ok, in})
			Expect(got).To(BeNil())
			Expect(err).To(BeAssignableToTypeOf(&lrp.Refusal{}))
			Expect(err.Error()).To(ContainSubstring(reason))
		},
		Entry("tcp without ports (the agent would open every port)", &models.SecurityGroupRule{Protocol: "tcp", Destinations: dest},
			"egress_rules[1].ports: protocol tcp needs ports or port_range"),
		Entry("both ports and port_range", &models.SecurityGroupRule{Protocol: "tcp", Destinations: dest, Ports: []uint32{80},
			PortRange: &models.PortRange{Start: 1, End: 2}}, "egress_rules[1].ports: ports and port_range are both set"),
		Entry("port 0", &models.SecurityGroupRule{Protocol: "udp", Destinations: dest, Ports: []uint32{0}},
			"egress_rules[1].ports[0] 0"),
		Entry("port above 65535", &models.SecurityGroupRule{Protocol: "udp", Destinations: dest, Ports: []uint32{65536}},
			"egress_rules[1].ports[0] 65536"),
		Entry("a reversed range", &models.SecurityGroupRule{Protocol: "tcp", Destinations: dest,
			PortRange: &models.PortRange{Start: 90, End: 80}}, "egress_rules[1].port_range 90-80"),
		Entry("a range past 65535", &models.SecurityGroupRule{Protocol: "tcp", Destinations: dest,
			PortRange: &models.PortRange{Start: 1, End: 70000}}, "egress_rules[1].port_range 1-70000"),
		Entry("ports on all", &models.SecurityGroupRule{Protocol: "all", Destinations: dest, Ports: []uint32{80}},
			"egress_rules[1]: ports and port_range need protocol tcp or udp, not all"),
		Entry("a port range on icmp", &models.SecurityGroupRule{Protocol: "icmp", Destinations: dest,
			PortRange: &models.PortRange{Start: 1, End: 2}, IcmpInfo: &models.ICMPInfo{Type: -1, Code: -1}},
			"egress_rules[1]: ports and port_range need protocol tcp or udp, not icmp"),
		Entry("one icmp type", &models.SecurityGroupRule{Protocol: "icmp", Destinations: dest,
			IcmpInfo: &models.ICMPInfo{Type: 8, Code: -1}}, "egress_rules[1].icmp_info type 8 code -1"),
		Entry("one icmp code", &models.SecurityGroupRule{Protocol: "icmp", Destinations: dest,
			IcmpInfo: &models.ICMPInfo{Type: -1, Code: 0}}, "egress_rules[1].icmp_info type -1 code 0"),
		Entry("icmp without icmp_info", &models.SecurityGroupRule{Protocol: "icmp", Destinations: dest},
			"egress_rules[1].icmp_info (none)"),
		Entry("icmp_info on tcp", &models.SecurityGroupRule{Protocol: "tcp", Destinations: dest, Ports: []uint32{80},
			IcmpInfo: &models.ICMPInfo{Type: -1, Code: -1}}, "egress_rules[1].icmp_info: only protocol icmp"),
		Entry("icmp_info on all", &models.SecurityGroupRule{Protocol: "all", Destinations: dest,
			IcmpInfo: &models.ICMPInfo{Type: -1, Code: -1}}, "egress_rules[1].icmp_info: only protocol icmp"),
		Entry("icmpv6", &models.SecurityGroupRule{Protocol: "icmpv6", Destinations: []string{"::/0"},
			IcmpInfo: &models.ICMPInfo{Type: -1, Code: -1}}, "egress_rules[1].protocol icmpv6"),
		Entry("an unknown protocol", &models.SecurityGroupRule{Protocol: "sctp", Destinations: dest},
			`egress_rules[1].protocol "sctp"`),
		Entry("no destinations", &models.SecurityGroupRule{Protocol: "all"}, "egress_rules[1].destinations: at least one"),
		Entry("an empty destination in a list", &models.SecurityGroupRule{Protocol: "all", Destinations: []string{"10.0.0.1,"}},
			`egress_rules[1].destinations "10.0.0.1,": empty destination`),
	)

	It("puts a desired LRP's and a task's rules in the run request", func() {
		rules := []*models.SecurityGroupRule{{Protocol: "tcp", Destinations: dest, Ports: []uint32{443}, Log: true}}
		want := []executor.EgressRule{{Protocol: "tcp", Destinations: dest, Ports: "443", Log: true}}
		d := desired()
		d.EgressRules = rules
		req, err := lrp.Translate(d, 0, settings)
		Expect(err).NotTo(HaveOccurred())
		Expect(req.EgressRules).To(Equal(want))
		Expect(req.Validate(true)).To(Succeed())

		t := &models.TaskDefinition{RootFs: "preloaded:cflinuxfs4", EgressRules: rules,
			Action: &models.Action{RunAction: &models.RunAction{Path: "/bin/true", User: "vcap"}}}
		req, err = lrp.TranslateTask(t, settings)
		Expect(err).NotTo(HaveOccurred())
		Expect(req.EgressRules).To(Equal(want))
	})
})

var _ = Describe("privileged", func() {
	allow := lrp.Settings{Stacks: settings.Stacks, AllowPrivileged: true}

	It("runs a privileged desired LRP or task privileged where the cell allows it", func() {
		d := desired()
		d.Privileged = true
		req, err := lrp.Translate(d, 0, allow)
		Expect(err).NotTo(HaveOccurred())
		Expect(req.Privileged).To(BeTrue())

		t := &models.TaskDefinition{RootFs: "preloaded:cflinuxfs4", Privileged: true,
			Action: &models.Action{RunAction: &models.RunAction{Path: "/bin/true", User: "vcap"}}}
		req, err = lrp.TranslateTask(t, allow)
		Expect(err).NotTo(HaveOccurred())
		Expect(req.Privileged).To(BeTrue())
	})

	It("leaves an unprivileged one unprivileged on such a cell", func() {
		req, err := lrp.Translate(desired(), 0, allow)
		Expect(err).NotTo(HaveOccurred())
		Expect(req.Privileged).To(BeFalse())
	})
})
