package containerstore

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("instanceEnv", func() {
	// Expected values are written out in Diego's formats: rep
	// conversion_helpers.go (INSTANCE_GUID, INSTANCE_INDEX, CF_INSTANCE_GUID,
	// CF_INSTANCE_INDEX) and executor depot/steps/run_step.go
	// networkingEnvVars (the rest; PORT is Cloud Controller's).
	DescribeTable("the variables a Diego cell sets, in Diego's formats",
		func(inst *Instance, want []string) {
			inst.GUID = "g-1"
			inst.Request = executor.RunRequest{Index: 3}
			Expect(instanceEnv(inst)).To(Equal(want))
		},
		Entry("port 8080 behind the proxy: its c2c listener on 61443 listed too, as Diego lists it",
			&Instance{ExternalIP: "10.0.16.4", InternalIP: "10.255.0.7",
				Ports: []executor.PortMapping{{ContainerPort: 8080, HostPort: 40000, ContainerTLSProxyPort: 61001, HostTLSProxyPort: 40001}}},
			[]string{
				"INSTANCE_GUID=g-1", "INSTANCE_INDEX=3", "CF_INSTANCE_GUID=g-1", "CF_INSTANCE_INDEX=3",
				"CF_INSTANCE_IP=10.0.16.4", "CF_INSTANCE_INTERNAL_IP=10.255.0.7",
				"CF_INSTANCE_PORT=40000", "CF_INSTANCE_ADDR=10.0.16.4:40000",
				`CF_INSTANCE_PORTS=[{"external":40000,"internal":8080,"external_tls_proxy":40001,"internal_tls_proxy":61001},{"external":40000,"internal":8080,"internal_tls_proxy":61443}]`,
				"PORT=8080",
			}),
		Entry("a host port and the proxy's TLS ports, with an IPv6 address",
			&Instance{ExternalIP: "10.0.16.4", InternalIP: "10.255.0.7", InternalIPv6: "fd00::7",
				Ports: []executor.PortMapping{{ContainerPort: 9090, HostPort: 40000, ContainerTLSProxyPort: 61001, HostTLSProxyPort: 40001}}},
			[]string{
				"INSTANCE_GUID=g-1", "INSTANCE_INDEX=3", "CF_INSTANCE_GUID=g-1", "CF_INSTANCE_INDEX=3",
				"CF_INSTANCE_IP=10.0.16.4", "CF_INSTANCE_INTERNAL_IP=10.255.0.7", "CF_INSTANCE_INTERNAL_IPV6=fd00::7",
				"CF_INSTANCE_PORT=40000", "CF_INSTANCE_ADDR=10.0.16.4:40000",
				`CF_INSTANCE_PORTS=[{"external":40000,"internal":9090,"external_tls_proxy":40001,"internal_tls_proxy":61001}]`,
				"PORT=9090",
			}),
		Entry("no host ports: external omitted, no CF_INSTANCE_PORT or CF_INSTANCE_ADDR, no IPv6 variable",
			&Instance{ExternalIP: "10.0.16.4", InternalIP: "10.255.0.7",
				Ports: []executor.PortMapping{{ContainerPort: 8081, ContainerTLSProxyPort: 61001}, {ContainerPort: 9090, ContainerTLSProxyPort: 61002}}},
			[]string{
				"INSTANCE_GUID=g-1", "INSTANCE_INDEX=3", "CF_INSTANCE_GUID=g-1", "CF_INSTANCE_INDEX=3",
				"CF_INSTANCE_IP=10.0.16.4", "CF_INSTANCE_INTERNAL_IP=10.255.0.7",
				`CF_INSTANCE_PORTS=[{"internal":8081,"internal_tls_proxy":61001},{"internal":9090,"internal_tls_proxy":61002}]`,
				"PORT=8081",
			}),
		Entry("host mode without a proxy: the same port outside and in",
			&Instance{ExternalIP: "10.0.16.4", InternalIP: "127.0.0.1",
				Ports: []executor.PortMapping{{ContainerPort: 8080, HostPort: 8080}}},
			[]string{
				"INSTANCE_GUID=g-1", "INSTANCE_INDEX=3", "CF_INSTANCE_GUID=g-1", "CF_INSTANCE_INDEX=3",
				"CF_INSTANCE_IP=10.0.16.4", "CF_INSTANCE_INTERNAL_IP=127.0.0.1",
				"CF_INSTANCE_PORT=8080", "CF_INSTANCE_ADDR=10.0.16.4:8080",
				`CF_INSTANCE_PORTS=[{"external":8080,"internal":8080}]`,
				"PORT=8080",
			}),
		Entry("no ports: empty CF_INSTANCE_PORT and CF_INSTANCE_ADDR, an empty list, no PORT",
			&Instance{ExternalIP: "10.0.16.4", InternalIP: "10.255.0.7"},
			[]string{
				"INSTANCE_GUID=g-1", "INSTANCE_INDEX=3", "CF_INSTANCE_GUID=g-1", "CF_INSTANCE_INDEX=3",
				"CF_INSTANCE_IP=10.0.16.4", "CF_INSTANCE_INTERNAL_IP=10.255.0.7",
				"CF_INSTANCE_PORT=", "CF_INSTANCE_ADDR=", "CF_INSTANCE_PORTS=[]",
			}),
	)
})
