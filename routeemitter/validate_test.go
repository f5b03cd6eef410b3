package routeemitter_test

import (
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/routeemitter"
	"github.com/cellagent/cellagent/routeemitter/routetable"
)

var _ = Describe("Validation", func() {
	DescribeTable("ValidateHostname",
		func(h string, valid bool) {
			err := routeemitter.ValidateHostname(h)
			if valid {
				Expect(err).NotTo(HaveOccurred())
			} else {
				Expect(err).To(MatchError(routeemitter.ErrInvalidRoute))
			}
		},
		Entry("simple", "app.example.com", true),
		Entry("single label", "localhost", true),
		Entry("digits and dashes", "a-1.b2.example.com", true),
		Entry("upper case", "App.Example.COM", true),
		Entry("wildcard", "*.example.com", true),
		Entry("path", "app.example.com/api", true),
		Entry("deep path", "app.example.com/api/v1/x-y_z~%41", true),
		Entry("63-char label", strings.Repeat("a", 63)+".com", true),
		Entry("253 chars", strings.Repeat(strings.Repeat("a", 49)+".", 5)+"abc", true),
		Entry("empty", "", false),
		Entry("64-char label", strings.Repeat("a", 64)+".com", false),
		Entry("254 chars", strings.Repeat(strings.Repeat("a", 49)+".", 5)+"abcd", false),
		Entry("leading dash", "-app.example.com", false),
		Entry("trailing dash", "app-.example.com", false),
		Entry("empty label", "app..example.com", false),
		Entry("trailing dot", "app.example.com.", false),
		Entry("leading dot", ".example.com", false),
		Entry("underscore", "my_app.example.com", false),
		Entry("space", "app example.com", false),
		Entry("unicode", "äpp.example.com", false),
		Entry("port", "app.example.com:8080", false),
		Entry("wildcard alone", "*.", false),
		Entry("wildcard in the middle", "app.*.example.com", false),
		Entry("two wildcards", "*.*.example.com", false),
		Entry("bare star", "*", false),
		Entry("path only", "/api", false),
		Entry("path with query", "app.example.com/api?x=1", false),
		Entry("path with fragment", "app.example.com/api#x", false),
		Entry("path with space", "app.example.com/a b", false),
		Entry("path with tab", "app.example.com/a\tb", false),
		Entry("path with unicode", "app.example.com/ä", false),
		Entry("trailing slash", "app.example.com/", false),
		Entry("empty segment", "app.example.com/a//b", false),
		Entry("path too long", "app.example.com/"+strings.Repeat("a", 255), false),
	)

	DescribeTable("ValidateRoutes",
		func(routes []routeemitter.Route, ports []uint16, problem string) {
			err := routeemitter.ValidateRoutes(routes, ports)
			if problem == "" {
				Expect(err).NotTo(HaveOccurred())
				return
			}
			Expect(err).To(MatchError(routeemitter.ErrInvalidRoute))
			Expect(err.Error()).To(ContainSubstring(problem))
		},
		Entry("valid", []routeemitter.Route{{Hostnames: []string{"a.example.com"}, Port: 8080}}, []uint16{8080}, ""),
		Entry("no routes", nil, []uint16{8080}, ""),
		Entry("port not of the instance", []routeemitter.Route{{Hostnames: []string{"a.example.com"}, Port: 9090}},
			[]uint16{8080}, "port 9090 is not a port of the instance"),
		Entry("no hostnames", []routeemitter.Route{{Port: 8080}}, []uint16{8080}, "no hostnames"),
		Entry("bad hostname", []routeemitter.Route{{Hostnames: []string{"a..b"}, Port: 8080}}, []uint16{8080}, `"a..b"`),
		Entry("1,000 hostnames", []routeemitter.Route{{Hostnames: hostnames(600), Port: 8080}, {Hostnames: hostnames(400), Port: 8080}},
			[]uint16{8080}, ""),
		Entry("1,001 hostnames", []routeemitter.Route{{Hostnames: hostnames(600), Port: 8080}, {Hostnames: hostnames(401), Port: 8080}},
			[]uint16{8080}, "1001 hostnames, at most 1000"),
		Entry("every optional field valid", []routeemitter.Route{{Hostnames: []string{"a.example.com"}, Port: 8080,
			RouteServiceURL: "https://rs.example.com:8443/p?q=1", IsolationSegment: "iso 1", Protocol: "http2",
			Options: &routetable.RouteOptions{LoadBalancing: "round-robin"}}}, []uint16{8080}, ""),
		Entry("http route service (Gorouter would drop the registration)", []routeemitter.Route{{Hostnames: []string{"a.example.com"}, Port: 8080,
			RouteServiceURL: "http://rs.example.com"}}, []uint16{8080}, "must be an https URL"),
		Entry("route service without a host", []routeemitter.Route{{Hostnames: []string{"a.example.com"}, Port: 8080,
			RouteServiceURL: "https:///x"}}, []uint16{8080}, "must be an https URL"),
		Entry("unparsable route service", []routeemitter.Route{{Hostnames: []string{"a.example.com"}, Port: 8080,
			RouteServiceURL: "https://rs.example.com/%zz"}}, []uint16{8080}, "route_service_url"),
		Entry("unknown protocol", []routeemitter.Route{{Hostnames: []string{"a.example.com"}, Port: 8080,
			Protocol: "h2"}}, []uint16{8080}, `protocol "h2"`),
		Entry("unknown load balancing", []routeemitter.Route{{Hostnames: []string{"a.example.com"}, Port: 8080,
			Options: &routetable.RouteOptions{LoadBalancing: "random"}}}, []uint16{8080}, `options.loadbalancing "random"`),
		Entry("isolation segment with a newline", []routeemitter.Route{{Hostnames: []string{"a.example.com"}, Port: 8080,
			IsolationSegment: "a\nb"}}, []uint16{8080}, "isolation_segment"),
		Entry("many bad hostnames are summarized", []routeemitter.Route{{Hostnames: strings.Split(strings.Repeat("-x,", 20), ",")[:20], Port: 8080}},
			[]uint16{8080}, "and 10 more problems"),
	)

	It("reports every problem at once", func() {
		err := routeemitter.ValidateRoutes([]routeemitter.Route{
			{Hostnames: []string{"ok.example.com"}, Port: 1},
			{Hostnames: []string{"bad_host"}, Port: 8080},
		}, []uint16{8080})
		Expect(err).To(MatchError(ContainSubstring("port 1")))
		Expect(err).To(MatchError(ContainSubstring("bad_host")))
	})
})

var _ = DescribeTable("ValidateMetricTags",
	func(tags map[string]executor.MetricTagValue, problem string) {
		err := routeemitter.ValidateMetricTags(tags)
		if problem == "" {
			Expect(err).NotTo(HaveOccurred())
			return
		}
		Expect(err).To(MatchError(ContainSubstring(problem)))
	},
	Entry("static and dynamic", map[string]executor.MetricTagValue{"a": {Static: "x"}, "i": {Dynamic: "index"}, "g": {Dynamic: "instance_guid"}}, ""),
	Entry("both", map[string]executor.MetricTagValue{"a": {Static: "x", Dynamic: "index"}}, "exactly one"),
	Entry("neither", map[string]executor.MetricTagValue{"a": {}}, "exactly one"),
	Entry("unknown dynamic", map[string]executor.MetricTagValue{"a": {Dynamic: "cell"}}, `dynamic "cell"`),
	Entry("empty name", map[string]executor.MetricTagValue{"": {Static: "x"}}, "tag name"),
	Entry("component is the agent's", map[string]executor.MetricTagValue{"component": {Static: "x"}}, "component"),
)

var _ = It("resolves dynamic metric tags per instance, as route-emitter does", func() {
	Expect(routeemitter.ResolveMetricTags(map[string]executor.MetricTagValue{
		"app": {Static: "web"}, "idx": {Dynamic: "index"}, "id": {Dynamic: "instance_guid"},
	}, "g-7", 4)).To(Equal(map[string]string{"app": "web", "idx": "4", "id": "g-7"}))
	Expect(routeemitter.ResolveMetricTags(nil, "g", 0)).To(BeNil())
})

func hostnames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("h%d.example.com", i)
	}
	return out
}
