package lrp_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/rep/lrp"
	"github.com/cellagent/cellagent/rep/models"
)

var settings = lrp.Settings{Stacks: map[string]string{"cflinuxfs4": "busybox"}, EmitRoutes: true}

func run(path string, args ...string) *models.Action {
	return &models.Action{RunAction: &models.RunAction{Path: path, Args: args, User: "vcap",
		Env: []*models.EnvironmentVariable{{Name: "RUN_ONLY", Value: "1"}}}}
}

// desired is what a single-process app desires, in the subset supported.
func desired() *models.DesiredLRP {
	return &models.DesiredLRP{
		ProcessGuid: "pg-1", Domain: "cf-apps", RootFs: "preloaded:cflinuxfs4", Instances: 2,
		EnvironmentVariables: []*models.EnvironmentVariable{{Name: "PORT", Value: "8080"}},
		Action:               &models.Action{CodependentAction: &models.CodependentAction{Actions: []*models.Action{run("/app/server", "--port", "8080")}}},
		StartTimeoutMs:       60000, DiskMb: 256, MemoryMb: 128, MaxPids: 1024, CpuWeight: 10, Ports: []uint32{8080},
		Routes:          &models.ProtoRoutes{Routes: map[string][]byte{"cf-router": []byte(`[{"hostnames":["a.example.com"],"port":8080}]`), "tcp-router": []byte(`[]`)}},
		LogGuid:         "log-1",
		CheckDefinition: &models.CheckDefinition{Checks: []*models.Check{{HttpCheck: &models.HTTPCheck{Port: 8080, Path: "/health"}}}},
		MetricTags: map[string]*models.MetricTagValue{"source_id": {Static: "pg-1"},
			"index": {Dynamic: models.MetricTagValue_INDEX}, "instance": {Dynamic: models.MetricTagValue_INSTANCE_GUID}},
		CertificateProperties: &models.CertificateProperties{OrganizationalUnit: []string{"app:1"}},
	}
}

// withUnknownField appends field num (bytes) to m's encoding and decodes
// it again, as a desired LRP from a newer BBS or with an unsupported
// feature arrives.
func withUnknownField(m proto.Message, num protowire.Number) {
	b, err := proto.Marshal(m)
	Expect(err).NotTo(HaveOccurred())
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte{})
	proto.Reset(m)
	Expect(proto.Unmarshal(b, m)).To(Succeed())
}

var _ = Describe("Translate", func() {
	It("translates a supported desired LRP completely", func() {
		req, err := lrp.Translate(desired(), 1, settings)
		Expect(err).NotTo(HaveOccurred())
		Expect(req).To(Equal(executor.RunRequest{
			LogGUID: "log-1", Index: 1,
			Resources: &executor.Resources{MemoryMB: 128, DiskMB: 256, MaxPids: 1024},
			Image:     "preloaded:busybox",
			Process: executor.Process{Path: "/app/server", Args: []string{"--port", "8080"}, User: "vcap",
				Env: []string{"PORT=8080", "RUN_ONLY=1"}},
			Ports:                 []uint16{8080},
			Routes:                []executor.Route{{Hostnames: []string{"a.example.com"}, Port: 8080}},
			Check:                 &executor.Check{HTTP: &executor.HTTPCheck{Port: 8080, Path: "/health"}},
			CertificateProperties: &executor.CertificateProperties{OrganizationalUnit: []string{"app:1"}},
			CPUWeight:             10,
			StartTimeout:          executor.Duration(time.Minute),
		}))
		Expect(req.Validate(true)).To(Succeed())
	})

	It("leaves routes to the platform when emit_routes is off", func() {
		req, err := lrp.Translate(desired(), 0, lrp.Settings{Stacks: settings.Stacks})
		Expect(err).NotTo(HaveOccurred())
		Expect(req.Routes).To(BeEmpty())
	})

	It("falls back to the deprecated start timeout in seconds", func() {
		d := desired()
		d.StartTimeoutMs, d.DeprecatedStartTimeoutS = 0, 30
		req, err := lrp.Translate(d, 0, settings)
		Expect(err).NotTo(HaveOccurred())
		Expect(req.StartTimeout).To(Equal(executor.Duration(30 * time.Second)))
	})

	It("accepts a bare run action and a serial around one run", func() {
		d := desired()
		d.Action = run("/bin/app")
		_, err := lrp.Translate(d, 0, settings)
		Expect(err).NotTo(HaveOccurred())
		d.Action = &models.Action{SerialAction: &models.SerialAction{Actions: []*models.Action{run("/bin/app")}}}
		_, err = lrp.Translate(d, 0, settings)
		Expect(err).NotTo(HaveOccurred())
	})

	DescribeTable("refuses what it cannot honour, naming it",
		func(change func(*models.DesiredLRP), reason string) {
			d := desired()
			change(d)
			_, err := lrp.Translate(d, 0, settings)
			var refusal *lrp.Refusal
			Expect(err).To(BeAssignableToTypeOf(refusal))
			Expect(err.Error()).To(ContainSubstring(reason))
		},
		Entry("a docker image run as root", func(d *models.DesiredLRP) {
			d.RootFs, d.Action = "docker:///busybox", &models.Action{RunAction: &models.RunAction{Path: "/bin/sh"}}
		}, "docker image runs as root"),
		Entry("another stack", func(d *models.DesiredLRP) { d.RootFs = "preloaded:cflinuxfs3" }, `stack "cflinuxfs3"`),
		Entry("privileged without allow_privileged", func(d *models.DesiredLRP) { d.Privileged = true },
			"privileged: this cell's allow_privileged is false"),
		Entry("a run action in setup", func(d *models.DesiredLRP) {
			d.Setup = &models.Action{SerialAction: &models.SerialAction{Actions: []*models.Action{download("/app"), run("/bin/true")}}}
		}, "setup.serial[1]: run and codependent actions before the app's run action are not supported"),
		Entry("an upload action in setup", func(d *models.DesiredLRP) {
			d.Setup = download("/app")
			withUnknownField(d.Setup, 2)
		}, "setup.upload action"),
		Entry("an empty parallel in setup", func(d *models.DesiredLRP) {
			d.Setup = &models.Action{ParallelAction: &models.ParallelAction{}}
		}, "setup.parallel: no actions"),
		Entry("a download in the main action", func(d *models.DesiredLRP) {
			d.Action = &models.Action{CodependentAction: &models.CodependentAction{Actions: []*models.Action{download("/app")}}}
		}, "supported in setup only"),
		Entry("a monitor without check_definition", func(d *models.DesiredLRP) {
			d.CheckDefinition, d.Monitor = nil, run("/bin/true")
		}, "monitor actions"),
		Entry("two processes", func(d *models.DesiredLRP) {
			d.Action = &models.Action{CodependentAction: &models.CodependentAction{Actions: []*models.Action{run("/a"), run("/b")}}}
		}, "codependent action with 2 actions"),
		Entry("no action", func(d *models.DesiredLRP) { d.Action = nil }, "no action"),
		Entry("nofile limits", func(d *models.DesiredLRP) {
			d.Action = run("/a")
			d.Action.RunAction.ResourceLimits = &models.ResourceLimits{OptionalNofile: &models.ResourceLimits_Nofile{Nofile: 1024}}
		}, "resource_limits"),
		Entry("two checks", func(d *models.DesiredLRP) {
			d.CheckDefinition.Checks = append(d.CheckDefinition.Checks, &models.Check{TcpCheck: &models.TCPCheck{Port: 8080}})
		}, "2 checks"),
		Entry("readiness checks", func(d *models.DesiredLRP) {
			d.CheckDefinition.ReadinessChecks = []*models.Check{{TcpCheck: &models.TCPCheck{Port: 8080}}}
		}, "readiness_checks"),
		Entry("a route service", func(d *models.DesiredLRP) {
			d.Routes.Routes["cf-router"] = []byte(`[{"hostnames":["a"],"port":8080,"route_service_url":"https://rs"}]`)
		}, "route services"),
		Entry("malformed routes", func(d *models.DesiredLRP) { d.Routes.Routes["cf-router"] = []byte(`{`) }, "routes[cf-router]"),
		Entry("trusted system certificates", func(d *models.DesiredLRP) {
			d.TrustedSystemCertificatesPath = "/etc/cf-system-certificates"
		}, "trusted_system_certificates_path"),
		Entry("an egress rule it cannot map exactly", func(d *models.DesiredLRP) {
			d.EgressRules = []*models.SecurityGroupRule{{Protocol: "icmp", Destinations: []string{"10.0.0.1"},
				IcmpInfo: &models.ICMPInfo{Type: 8, Code: 0}}}
		}, "egress_rules[0].icmp_info type 8 code 0"),
		Entry("sidecars (field 36)", func(d *models.DesiredLRP) { withUnknownField(d, 36) }, "sidecars"),
		Entry("a field this cell does not know", func(d *models.DesiredLRP) { withUnknownField(d, 99) }, "field 99"),
		Entry("an upload action in the tree", func(d *models.DesiredLRP) {
			withUnknownField(d.Action.CodependentAction.Actions[0], 2)
		}, "action.codependent_action.actions[0].upload action"),
	)
})

var _ = Describe("MetricTags", func() {
	It("resolves static and dynamic tags per instance", func() {
		Expect(lrp.MetricTags(desired(), 3, "ig-1")).To(Equal(map[string]string{
			"source_id": "pg-1", "index": "3", "instance": "ig-1"}))
	})
})

var _ = Describe("TranslateTask", func() {
	task := func() *models.TaskDefinition {
		return &models.TaskDefinition{RootFs: "preloaded:cflinuxfs4", MemoryMb: 64, DiskMb: 32, LogGuid: "lg",
			EnvironmentVariables: []*models.EnvironmentVariable{{Name: "A", Value: "1"}},
			Action:               &models.Action{RunAction: &models.RunAction{Path: "/bin/sh", Args: []string{"-c", "true"}, User: "vcap"}}}
	}

	It("translates a task's single run into a container without ports or check", func() {
		req, err := lrp.TranslateTask(task(), settings)
		Expect(err).NotTo(HaveOccurred())
		Expect(req).To(Equal(executor.RunRequest{LogGUID: "lg", Image: "preloaded:busybox",
			Resources: &executor.Resources{MemoryMB: 64, DiskMB: 32},
			Process:   executor.Process{Path: "/bin/sh", Args: []string{"-c", "true"}, User: "vcap", Env: []string{"A=1"}}}))
		Expect(req.Validate(true)).To(Succeed())
	})

	DescribeTable("refuses what it cannot honour",
		func(change func(*models.TaskDefinition), reason string) {
			t := task()
			change(t)
			_, err := lrp.TranslateTask(t, settings)
			Expect(err).To(BeAssignableToTypeOf(&lrp.Refusal{}))
			Expect(err.Error()).To(ContainSubstring(reason))
		},
		Entry("a relative result file", func(t *models.TaskDefinition) { t.ResultFile = "tmp/result" }, "result_file: file path"),
		Entry("a result file leaving its directory", func(t *models.TaskDefinition) { t.ResultFile = "/tmp/../etc/shadow" }, "must be clean"),
		Entry("privileged without allow_privileged", func(t *models.TaskDefinition) { t.Privileged = true },
			"privileged: this cell's allow_privileged is false"),
		Entry("an egress rule without ports", func(t *models.TaskDefinition) {
			t.EgressRules = []*models.SecurityGroupRule{{Protocol: "tcp", Destinations: []string{"10.0.0.1"}}}
		}, "egress_rules[0].ports"),
		Entry("a docker image run as root", func(t *models.TaskDefinition) {
			t.RootFs, t.Action.RunAction.User = "docker:///busybox", "root"
		}, "docker image runs as root"),
	)
})
