package envoyvalidate_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/proxyconfig/envoyvalidate"
)

func TestEnvoyvalidate(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Envoyvalidate Suite")
}

// The validator must be able to fail, or the schema tests built on it prove
// nothing.
var _ = Describe("envoyvalidate", func() {
	DescribeTable("rejects bootstraps Envoy would reject",
		func(yaml, message string) {
			_, err := envoyvalidate.Bootstrap([]byte(yaml))
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("an unknown field", "admin: {bogus: 1}", "bogus"),
		Entry("an unknown Any type", `
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 0.0.0.0, port_value: 1}}
    filter_chains:
    - filters:
      - name: x
        typed_config: {"@type": type.googleapis.com/envoy.nope.v3.Nope}
`, "envoy.nope.v3.Nope"),
		Entry("a tcp_proxy without stat_prefix (checked inside the Any)", `
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 0.0.0.0, port_value: 1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          cluster: c
`, "StatPrefix"),
		Entry("a port out of range", `admin: {address: {socket_address: {address: 127.0.0.1, port_value: 70000}}}`, "PortValue"),
	)

	It("rejects an SDS file whose resource is not a Secret", func() {
		_, _, err := envoyvalidate.Secrets([]byte(`
resources:
- "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
  stat_prefix: s
  cluster: c
`))
		Expect(err).To(MatchError(ContainSubstring("not a Secret")))
	})
})
