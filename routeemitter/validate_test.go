package routeemitter_test

import (
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/routeemitter"
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

func hostnames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("h%d.example.com", i)
	}
	return out
}
