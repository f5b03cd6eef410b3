package proxy_test

import (
	"os"
	"path/filepath"
	"time"

	"crypto/tls"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"

	"github.com/cellagent/cellagent/proxy"
	"github.com/cellagent/cellagent/proxyconfig"
)

// doc is a bootstrap or SDS file as a generic tree, to mutate in tests.
type doc = map[string]any

// at walks a tree by keys (string) and indexes (int).
func at(v any, path ...any) doc {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			v = v.(doc)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v.(doc)
}

func generated(mtls bool) (string, proxyconfig.Config) {
	dir := GinkgoT().TempDir()
	cfg := proxyconfig.Config{ConfigDir: dir}
	if mtls {
		ca := newCA("router-ca")
		cfg.RequireClientCerts, cfg.TrustedCAPEM, cfg.VerifySAN = true, ca.pem, []string{"gorouter"}
	}
	leaf := newCA("identity").issue(instanceGUID, instanceGUID)
	mappings := []proxyconfig.Mapping{{AppPort: 8080, ProxyPort: 61001}, {AppPort: 9090, ProxyPort: 61002}}
	Expect(proxyconfig.Write(dir, cfg, mappings, 61003, leaf.certPEM, leaf.keyPEM, "1")).To(Succeed())
	return dir, cfg
}

func load(dir, name string) doc {
	data, err := os.ReadFile(filepath.Join(dir, name))
	Expect(err).NotTo(HaveOccurred())
	var d doc
	Expect(yaml.Unmarshal(data, &d)).To(Succeed())
	return d
}

func store(dir, name string, d doc) {
	data, err := yaml.Marshal(d)
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(filepath.Join(dir, name), data, 0o600)).To(Succeed())
}

var _ = Describe("ParseBootstrap", func() {
	It("reads what proxyconfig generates", func() {
		dir, _ := generated(true)
		spec, err := proxy.LoadBootstrap(filepath.Join(dir, proxyconfig.BootstrapFile))
		Expect(err).NotTo(HaveOccurred())
		Expect(spec.AdminAddr).To(Equal("127.0.0.1:61003"))
		Expect(spec.Listeners).To(HaveLen(2))
		l := spec.Listeners[1]
		Expect(l.Name).To(Equal("tls-61002"))
		Expect(l.Addr).To(Equal("0.0.0.0:61002"))
		Expect(l.Upstream).To(Equal("127.0.0.1:9090"))
		Expect(l.ConnectTimeout).To(Equal(250 * time.Millisecond))
		Expect(l.MinVersion).To(Equal(uint16(tls.VersionTLS12)))
		Expect(l.CipherSuites).To(HaveLen(6))
		Expect(l.CipherSuites).To(ContainElement(tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256))
		Expect(l.Cert).To(Equal(proxy.SecretRef{Name: "id-cert-and-key", Path: filepath.Join(dir, "sds-id-cert-and-key.yaml")}))
		Expect(*l.Validation).To(Equal(proxy.SecretRef{Name: "id-validation-context", Path: filepath.Join(dir, "sds-id-validation-context.yaml")}))
		Expect(l.RequireClientCert).To(BeTrue())
	})

	listener := []any{"static_resources", "listeners", 0}
	chain := append(listener[:3:3], "filter_chains", 0)
	tcpProxy := append(chain[:5:5], "filters", 0, "typed_config")
	common := append(chain[:5:5], "transport_socket", "typed_config", "common_tls_context")
	cluster := []any{"static_resources", "clusters", 0}

	DescribeTable("rejects what it does not understand, naming the field",
		func(mutate func(doc), message string) {
			dir, _ := generated(true)
			d := load(dir, proxyconfig.BootstrapFile)
			mutate(d)
			store(dir, proxyconfig.BootstrapFile, d)
			_, err := proxy.LoadBootstrap(filepath.Join(dir, proxyconfig.BootstrapFile))
			Expect(err).To(MatchError(ContainSubstring(message)))
			Expect(err.Error()).To(HavePrefix(filepath.Join(dir, proxyconfig.BootstrapFile) + ": "))
		},
		Entry("an unknown top-level section", func(d doc) { d["dynamic_resources"] = doc{} },
			"dynamic_resources: not supported by cellproxy"),
		Entry("another network filter", func(d doc) {
			f := at(d, append(chain, "filters", 0)...)
			f["name"] = "envoy.filters.network.http_connection_manager"
		}, `static_resources.listeners[0].filter_chains[0].filters[0].name: unsupported filter "envoy.filters.network.http_connection_manager"`),
		Entry("a listener without TLS", func(d doc) { delete(at(d, chain...), "transport_socket") },
			"static_resources.listeners[0].filter_chains[0].transport_socket: missing: cellproxy serves TLS only"),
		Entry("another transport socket", func(d doc) {
			at(d, append(chain, "transport_socket")...)["name"] = "envoy.transport_sockets.raw_buffer"
		},
			`transport_socket.name: unsupported transport socket "envoy.transport_sockets.raw_buffer"`),
		Entry("a wrong typed_config type", func(d doc) { at(d, tcpProxy...)["@type"] = "type.googleapis.com/x.Y" },
			`typed_config.@type: unsupported type "type.googleapis.com/x.Y"`),
		Entry("an unknown tcp_proxy option", func(d doc) { at(d, tcpProxy...)["idle_timeout"] = "10s" },
			"filters[0].typed_config.idle_timeout: not supported by cellproxy"),
		Entry("a cluster nobody defined", func(d doc) { at(d, tcpProxy...)["cluster"] = "nope" },
			`typed_config.cluster: no cluster named "nope"`),
		Entry("an unknown cipher", func(d doc) {
			at(d, append(common, "tls_params")...)["cipher_suites"] = []any{"ECDHE-RSA-AES128-GCM-SHA256", "AES128-SHA"}
		}, `tls_params.cipher_suites[1]: unsupported cipher "AES128-SHA"`),
		Entry("TLS 1.1", func(d doc) { at(d, append(common, "tls_params")...)["tls_minimum_protocol_version"] = "TLSv1_1" },
			`tls_minimum_protocol_version: unsupported TLS version "TLSv1_1"`),
		Entry("a certificate from an SDS server", func(d doc) {
			sds := at(d, append(common, "tls_certificate_sds_secret_configs", 0, "sds_config")...)
			delete(sds, "path_config_source")
			sds["api_config_source"] = doc{"api_type": "GRPC"}
		}, "sds_config.path_config_source: missing: cellproxy reads secrets from files only"),
		Entry("an inline certificate", func(d doc) { at(d, common...)["tls_certificates"] = []any{} },
			"common_tls_context.tls_certificates: not supported by cellproxy"),
		Entry("client certificates without a validation context", func(d doc) {
			delete(at(d, common...), "validation_context_sds_secret_config")
		}, "require_client_certificate: true without validation_context_sds_secret_config"),
		Entry("a DNS cluster", func(d doc) { at(d, cluster...)["type"] = "STRICT_DNS" },
			`static_resources.clusters[0].type: unsupported cluster type "STRICT_DNS"`),
		Entry("two endpoints", func(d doc) {
			eps := at(d, append(cluster, "load_assignment", "endpoints", 0)...)
			lbs := eps["lb_endpoints"].([]any)
			eps["lb_endpoints"] = append(lbs, lbs[0])
		}, "lb_endpoints: cellproxy supports exactly one endpoint per cluster, got 2"),
		Entry("a connection limit", func(d doc) {
			at(d, append(cluster, "circuit_breakers", "thresholds", 0)...)["max_connections"] = 1024
		}, "thresholds[0].max_connections: cellproxy enforces no connection limits"),
		Entry("a bad connect timeout", func(d doc) { at(d, cluster...)["connect_timeout"] = "soon" },
			`connect_timeout: expected a duration like "0.25s", got "soon"`),
		Entry("a host name instead of an IP", func(d doc) {
			at(d, append(listener, "address", "socket_address")...)["address"] = "localhost"
		}, `listeners[0].address.socket_address.address: "localhost" is not an IP address`),
		Entry("a port out of range", func(d doc) { at(d, "admin", "address", "socket_address")["port_value"] = 70000 },
			"admin.address.socket_address.port_value: expected an integer from 0 to 65535, got 70000"),
		Entry("a port as a string", func(d doc) { at(d, "admin", "address", "socket_address")["port_value"] = "61003" },
			"port_value: expected an integer"),
		Entry("two listeners on one port", func(d doc) {
			at(d, "static_resources", "listeners", 1, "address", "socket_address")["port_value"] = 61001
		}, "address 0.0.0.0:61001 already used by listener tls-61001"),
		Entry("no admin", func(d doc) { delete(d, "admin") }, "admin: missing"),
	)

	It("rejects a file that is not YAML", func() {
		_, err := proxy.ParseBootstrap("envoy.yaml", []byte("admin: [unclosed"))
		Expect(err).To(MatchError(ContainSubstring("envoy.yaml: not YAML")))
	})
})

var _ = Describe("New", func() {
	DescribeTable("rejects SDS files it does not understand, naming file and field",
		func(file string, mutate func(doc), message string) {
			dir, _ := generated(true)
			d := load(dir, file)
			mutate(d)
			store(dir, file, d)
			_, err := proxy.New(lagerDiscard(), proxy.Config{BootstrapPath: filepath.Join(dir, proxyconfig.BootstrapFile)})
			Expect(err).To(MatchError(ContainSubstring(filepath.Join(dir, file) + ": " + message)))
		},
		Entry("a certificate from a file name", proxyconfig.CertAndKeyFile, func(d doc) {
			tc := at(d, "resources", 0, "tls_certificate", "certificate_chain")
			delete(tc, "inline_string")
			tc["filename"] = "/etc/cert.pem"
		}, "resources[0].tls_certificate.certificate_chain.filename: not supported by cellproxy"),
		Entry("another secret's name", proxyconfig.CertAndKeyFile, func(d doc) { at(d, "resources", 0)["name"] = "other" },
			`resources[0].name: secret "other", but the bootstrap asks for "id-cert-and-key"`),
		Entry("two secrets in one file", proxyconfig.CertAndKeyFile, func(d doc) {
			d["resources"] = append(d["resources"].([]any), d["resources"].([]any)[0])
		}, "resources: cellproxy expects exactly one secret per file, got 2"),
		Entry("a prefix SAN matcher", proxyconfig.ValidationContextFile, func(d doc) {
			m := at(d, "resources", 0, "validation_context", "match_typed_subject_alt_names", 0, "matcher")
			delete(m, "exact")
			m["prefix"] = "gorouter"
		}, "resources[0].validation_context.match_typed_subject_alt_names[0].matcher.prefix: not supported by cellproxy (understood here: exact, ignore_case)"),
		Entry("an IP SAN matcher", proxyconfig.ValidationContextFile, func(d doc) {
			at(d, "resources", 0, "validation_context", "match_typed_subject_alt_names", 0)["san_type"] = "IP_ADDRESS"
		}, `resources[0].validation_context.match_typed_subject_alt_names[0].san_type: unsupported SAN type "IP_ADDRESS"`),
		Entry("a CRL", proxyconfig.ValidationContextFile, func(d doc) {
			at(d, "resources", 0, "validation_context")["crl"] = doc{"inline_string": "x"}
		}, "resources[0].validation_context.crl: not supported by cellproxy"),
		Entry("a key that does not match", proxyconfig.CertAndKeyFile, func(d doc) {
			other := newCA("x").issue("x")
			at(d, "resources", 0, "tls_certificate", "private_key")["inline_string"] = string(other.keyPEM)
		}, "secret id-cert-and-key: tls: private key does not match public key"),
	)

	It("fails when an SDS file is missing", func() {
		dir, _ := generated(false)
		Expect(os.Remove(filepath.Join(dir, proxyconfig.CertAndKeyFile))).To(Succeed())
		_, err := proxy.New(lagerDiscard(), proxy.Config{BootstrapPath: filepath.Join(dir, proxyconfig.BootstrapFile)})
		Expect(err).To(MatchError(ContainSubstring("read secret id-cert-and-key")))
	})
})
