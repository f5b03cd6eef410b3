package proxyconfig_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/cellagent/cellagent/proxyconfig"
	"github.com/cellagent/cellagent/proxyconfig/envoyvalidate"
)

var _ = Describe("generated files", func() {
	var (
		dir                    string
		caPEM, leafPEM, keyPEM []byte
	)

	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		caPEM = readTestdata("ca.pem")
		leafPEM = readTestdata("leaf.pem")
		keyPEM = readTestdata("leaf-key.pem")
	})

	mtls := func() proxyconfig.Config {
		return proxyconfig.Config{
			RequireClientCerts: true,
			TrustedCAPEM:       caPEM,
			VerifySAN:          []string{"router.service.cf.internal", "spiffe://cf/router"},
			NodeID:             "instance-guid",
		}
	}

	Describe("envoy.yaml", func() {
		DescribeTable("matches its golden file and Envoy's schema",
			func(golden string, mtlsOn bool, appPorts []uint16) {
				cfg := proxyconfig.Config{}
				if mtlsOn {
					cfg = mtls()
				}
				mappings, admin, err := proxyconfig.AllocatePorts(appPorts)
				Expect(err).NotTo(HaveOccurred())
				Expect(proxyconfig.Write(dir, cfg, mappings, admin, leafPEM, keyPEM, "1")).To(Succeed())

				data := readFile(dir, proxyconfig.BootstrapFile)
				expectGolden(golden, data)
				Expect(envoyvalidate.Dir(dir, proxyconfig.BootstrapFile)).To(Succeed())

				b, err := envoyvalidate.Bootstrap(data)
				Expect(err).NotTo(HaveOccurred())
				Expect(b.GetAdmin().GetAddress().GetSocketAddress().GetAddress()).To(Equal("127.0.0.1"))
				Expect(b.GetAdmin().GetAddress().GetSocketAddress().GetPortValue()).To(BeEquivalentTo(admin))

				clusters := b.GetStaticResources().GetClusters()
				listeners := b.GetStaticResources().GetListeners()
				Expect(clusters).To(HaveLen(len(mappings)))
				Expect(listeners).To(HaveLen(len(mappings)))
				for i, mp := range mappings {
					c := clusters[i]
					Expect(c.GetType().String()).To(Equal("STATIC"))
					Expect(c.GetConnectTimeout().AsDuration()).To(Equal(250 * time.Millisecond))
					ep := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
					Expect(ep.GetAddress()).To(Equal("127.0.0.1"))
					Expect(ep.GetPortValue()).To(BeEquivalentTo(mp.AppPort))

					l := listeners[i]
					sa := l.GetAddress().GetSocketAddress()
					Expect(sa.GetAddress()).To(Equal("0.0.0.0"))
					Expect(sa.GetPortValue()).To(BeEquivalentTo(mp.ProxyPort))
					fc := l.GetFilterChains()[0]
					Expect(fc.GetFilters()[0].GetName()).To(Equal("envoy.filters.network.tcp_proxy"))
					tp := &tcpproxyv3.TcpProxy{}
					Expect(fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(tp)).To(Succeed())
					Expect(tp.GetCluster()).To(Equal(c.GetName()))

					Expect(fc.GetTransportSocket().GetName()).To(Equal("envoy.transport_sockets.tls"))
					tctx := &tlsv3.DownstreamTlsContext{}
					Expect(fc.GetTransportSocket().GetTypedConfig().UnmarshalTo(tctx)).To(Succeed())
					common := tctx.GetCommonTlsContext()
					Expect(common.GetTlsParams().GetTlsMinimumProtocolVersion()).To(Equal(tlsv3.TlsParameters_TLSv1_2))
					Expect(common.GetTlsParams().GetCipherSuites()).To(Equal(proxyconfig.CipherSuites))
					sds := common.GetTlsCertificateSdsSecretConfigs()
					Expect(sds).To(HaveLen(1))
					Expect(sds[0].GetName()).To(Equal("id-cert-and-key"))
					pcs := sds[0].GetSdsConfig().GetPathConfigSource()
					Expect(pcs.GetPath()).To(Equal("/etc/cf-assets/envoy_config/sds-id-cert-and-key.yaml"))
					Expect(pcs.GetWatchedDirectory().GetPath()).To(Equal("/etc/cf-assets/envoy_config"))

					Expect(tctx.GetRequireClientCertificate().GetValue()).To(Equal(mtlsOn))
					if mtlsOn {
						v := common.GetValidationContextSdsSecretConfig()
						Expect(v.GetName()).To(Equal("id-validation-context"))
						Expect(v.GetSdsConfig().GetPathConfigSource().GetPath()).
							To(Equal("/etc/cf-assets/envoy_config/sds-id-validation-context.yaml"))
					} else {
						Expect(common.GetValidationContextSdsSecretConfig()).To(BeNil())
					}
				}
			},
			Entry("one port, no client certs", "bootstrap-one-port.golden", false, []uint16{8080}),
			Entry("several ports, no client certs", "bootstrap-several-ports.golden", false, []uint16{8080, 61010, 2222}),
			Entry("one port, client certs", "bootstrap-one-port-mtls.golden", true, []uint16{8080}),
			Entry("several ports, client certs", "bootstrap-several-ports-mtls.golden", true, []uint16{8080, 61010, 2222}),
		)

		It("offers Diego's ALPN h2,http/1.1 only on listeners of http2 routes, and forwards to the configured app host, per Envoy's types", func() {
			mappings := []proxyconfig.Mapping{{AppPort: 8080, ProxyPort: 61001, HTTP2: true}, {AppPort: 9090, ProxyPort: 61002}}
			Expect(proxyconfig.Write(dir, proxyconfig.Config{AppHost: "10.255.0.7"}, mappings, 61003, leafPEM, keyPEM, "1")).To(Succeed())
			Expect(envoyvalidate.Dir(dir, proxyconfig.BootstrapFile)).To(Succeed())
			b, err := envoyvalidate.Bootstrap(readFile(dir, proxyconfig.BootstrapFile))
			Expect(err).NotTo(HaveOccurred())
			var alpn [][]string
			for _, l := range b.GetStaticResources().GetListeners() {
				tctx := &tlsv3.DownstreamTlsContext{}
				Expect(l.GetFilterChains()[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(tctx)).To(Succeed())
				alpn = append(alpn, tctx.GetCommonTlsContext().GetAlpnProtocols())
			}
			Expect(alpn).To(Equal([][]string{{"h2,http/1.1"}, nil}))
			for _, c := range b.GetStaticResources().GetClusters() {
				ep := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
				Expect(ep.GetAddress()).To(Equal("10.255.0.7"))
			}
		})

		It("adds Diego's c2c listener: 61443 to app port 8080 with the c2c certificate, no client certificate, no ALPN, per Envoy's types", func() {
			cfg := mtls()
			mappings := []proxyconfig.Mapping{{AppPort: 8080, ProxyPort: 61001, HTTP2: true}, proxyconfig.C2CMapping()}
			Expect(proxyconfig.Write(dir, cfg, mappings, 61002, leafPEM, keyPEM, "1")).To(Succeed())
			Expect(proxyconfig.WriteC2CCertAndKey(dir, leafPEM, keyPEM, "c1")).To(Succeed())
			Expect(envoyvalidate.Dir(dir, proxyconfig.BootstrapFile)).To(Succeed())
			_, secrets, err := envoyvalidate.Secrets(readFile(dir, proxyconfig.C2CCertAndKeyFile))
			Expect(err).NotTo(HaveOccurred())
			Expect(secrets).To(HaveLen(1))
			Expect(secrets[0].GetName()).To(Equal("c2c-cert-and-key"))

			b, err := envoyvalidate.Bootstrap(readFile(dir, proxyconfig.BootstrapFile))
			Expect(err).NotTo(HaveOccurred())
			Expect(b.GetStaticResources().GetClusters()).To(HaveLen(1), "one cluster for app port 8080")
			ls := b.GetStaticResources().GetListeners()
			Expect(ls).To(HaveLen(2))
			c2c := ls[1]
			Expect(c2c.GetAddress().GetSocketAddress().GetPortValue()).To(BeEquivalentTo(61443))
			tp := &tcpproxyv3.TcpProxy{}
			Expect(c2c.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(tp)).To(Succeed())
			Expect(tp.GetCluster()).To(Equal("app-8080"))
			tctx := &tlsv3.DownstreamTlsContext{}
			Expect(c2c.GetFilterChains()[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(tctx)).To(Succeed())
			common := tctx.GetCommonTlsContext()
			Expect(common.GetTlsCertificateSdsSecretConfigs()[0].GetName()).To(Equal("c2c-cert-and-key"))
			Expect(common.GetTlsCertificateSdsSecretConfigs()[0].GetSdsConfig().GetPathConfigSource().GetPath()).
				To(Equal("/etc/cf-assets/envoy_config/sds-c2c-cert-and-key.yaml"))
			Expect(tctx.GetRequireClientCertificate().GetValue()).To(BeFalse())
			Expect(common.GetValidationContextSdsSecretConfig()).To(BeNil())
			Expect(common.GetAlpnProtocols()).To(BeEmpty())
		})

		It("uses the configured in-container directory", func() {
			cfg := proxyconfig.Config{ConfigDir: "/custom/proxy"}
			Expect(proxyconfig.WriteBootstrap(dir, cfg, []proxyconfig.Mapping{{AppPort: 8080, ProxyPort: 61001}}, 61002)).To(Succeed())
			data := string(readFile(dir, proxyconfig.BootstrapFile))
			Expect(data).To(ContainSubstring(`"path": "/custom/proxy/sds-id-cert-and-key.yaml"`))
			Expect(data).NotTo(ContainSubstring("/etc/cf-assets"))
		})

		DescribeTable("rejects inconsistent input and writes nothing",
			func(cfg proxyconfig.Config, mappings []proxyconfig.Mapping, admin uint16, message string) {
				err := proxyconfig.WriteBootstrap(dir, cfg, mappings, admin)
				Expect(err).To(MatchError(ContainSubstring(message)))
				Expect(entries(dir)).To(BeEmpty())
			},
			Entry("two listeners on one port", proxyconfig.Config{},
				[]proxyconfig.Mapping{{AppPort: 8080, ProxyPort: 61001}, {AppPort: 8081, ProxyPort: 61001}}, uint16(61002), "port 61001 already used"),
			Entry("admin on a listener port", proxyconfig.Config{},
				[]proxyconfig.Mapping{{AppPort: 8080, ProxyPort: 61001}}, uint16(61001), "already used by admin"),
			Entry("client certs without a CA", proxyconfig.Config{RequireClientCerts: true},
				[]proxyconfig.Mapping{{AppPort: 8080, ProxyPort: 61001}}, uint16(61002), "trusted ca: no PEM certificate"),
			Entry("a relative config dir", proxyconfig.Config{ConfigDir: "envoy_config"},
				[]proxyconfig.Mapping{{AppPort: 8080, ProxyPort: 61001}}, uint16(61002), "not absolute"),
		)
	})

	Describe("sds-id-cert-and-key.yaml", func() {
		It("matches its golden file and holds one valid Secret with the chain and key", func() {
			Expect(proxyconfig.WriteCertAndKey(dir, leafPEM, keyPEM, "serial-1")).To(Succeed())
			data := readFile(dir, proxyconfig.CertAndKeyFile)
			expectGolden("sds-id-cert-and-key.golden", data)

			resp, secrets, err := envoyvalidate.Secrets(data)
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetVersionInfo()).To(Equal("serial-1"))
			Expect(secrets).To(HaveLen(1))
			Expect(secrets[0].GetName()).To(Equal("id-cert-and-key"))
			Expect(secrets[0].GetTlsCertificate().GetCertificateChain().GetInlineString()).To(Equal(string(leafPEM)))
			Expect(secrets[0].GetTlsCertificate().GetPrivateKey().GetInlineString()).To(Equal(string(keyPEM)))
		})

		It("refuses a key that does not match the certificate", func() {
			err := proxyconfig.WriteCertAndKey(dir, caPEM, keyPEM, "1")
			Expect(err).To(MatchError(ContainSubstring("sds-id-cert-and-key.yaml")))
			Expect(entries(dir)).To(BeEmpty())
		})

		It("is written the same for an issued pair (no pair check), identity and c2c, and needs a version", func() {
			Expect(proxyconfig.WriteIssuedCertAndKey(dir, leafPEM, keyPEM, "serial-1")).To(Succeed())
			expectGolden("sds-id-cert-and-key.golden", readFile(dir, proxyconfig.CertAndKeyFile))

			other := GinkgoT().TempDir()
			Expect(proxyconfig.WriteC2CCertAndKey(other, leafPEM, keyPEM, "c1")).To(Succeed())
			Expect(proxyconfig.WriteIssuedC2CCertAndKey(dir, leafPEM, keyPEM, "c1")).To(Succeed())
			Expect(readFile(dir, proxyconfig.C2CCertAndKeyFile)).To(Equal(readFile(other, proxyconfig.C2CCertAndKeyFile)))

			Expect(proxyconfig.WriteIssuedCertAndKey(dir, leafPEM, keyPEM, "")).To(MatchError(ContainSubstring("empty version")))
			Expect(proxyconfig.WriteIssuedC2CCertAndKey(dir, leafPEM, keyPEM, "")).To(MatchError(ContainSubstring("empty version")))
		})
	})

	Describe("ReadCertificate", func() {
		leafSerial := func() string {
			block, _ := pem.Decode(leafPEM)
			cert, err := x509.ParseCertificate(block.Bytes)
			Expect(err).NotTo(HaveOccurred())
			return cert.SerialNumber.String()
		}

		It("reads the leaf of the file the package writes", func() {
			Expect(proxyconfig.WriteCertAndKey(dir, leafPEM, keyPEM, "serial-1")).To(Succeed())
			cert, err := proxyconfig.ReadCertificate(dir)
			Expect(err).NotTo(HaveOccurred())
			Expect(cert.SerialNumber.String()).To(Equal(leafSerial()))
		})

		It("reads the YAML form an older agent wrote", func() {
			var b strings.Builder
			b.WriteString("# Generated by cellagent (proxyconfig); rewritten on every change.\nresources:\n")
			b.WriteString("- '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n  name: id-cert-and-key\n")
			b.WriteString("  tls_certificate:\n    certificate_chain:\n      inline_string: |\n")
			for _, line := range strings.SplitAfter(strings.TrimSuffix(string(leafPEM), "\n"), "\n") {
				b.WriteString("        " + strings.TrimSuffix(line, "\n") + "\n")
			}
			b.WriteString("version_info: 'serial-1'\n")
			Expect(os.WriteFile(filepath.Join(dir, proxyconfig.CertAndKeyFile), []byte(b.String()), 0o640)).To(Succeed())
			cert, err := proxyconfig.ReadCertificate(dir)
			Expect(err).NotTo(HaveOccurred())
			Expect(cert.SerialNumber.String()).To(Equal(leafSerial()))
		})

		It("says what is wrong with a file that holds no certificate", func() {
			Expect(os.WriteFile(filepath.Join(dir, proxyconfig.CertAndKeyFile), []byte("# Generated by cellagent (proxyconfig); rewritten on every change.\n{\"resources\": []}\n"), 0o640)).To(Succeed())
			_, err := proxyconfig.ReadCertificate(dir)
			Expect(err).To(MatchError(ContainSubstring("no certificate secret")))
		})
	})

	Describe("sds-id-validation-context.yaml", func() {
		It("matches its golden file and holds the CA and exact DNS and URI SAN matchers", func() {
			Expect(proxyconfig.WriteValidationContext(dir, mtls())).To(Succeed())
			data := readFile(dir, proxyconfig.ValidationContextFile)
			expectGolden("sds-id-validation-context.golden", data)

			_, secrets, err := envoyvalidate.Secrets(data)
			Expect(err).NotTo(HaveOccurred())
			Expect(secrets).To(HaveLen(1))
			Expect(secrets[0].GetName()).To(Equal("id-validation-context"))
			vc := secrets[0].GetValidationContext()
			Expect(vc.GetTrustedCa().GetInlineString()).To(Equal(string(caPEM)))
			var got []string
			for _, mt := range vc.GetMatchTypedSubjectAltNames() {
				got = append(got, mt.GetSanType().String()+"="+mt.GetMatcher().GetExact())
			}
			Expect(got).To(Equal([]string{
				"DNS=router.service.cf.internal", "URI=router.service.cf.internal",
				"DNS=spiffe://cf/router", "URI=spiffe://cf/router",
			}))
		})

		It("omits SAN matchers when no SAN is configured (any cert from the CA)", func() {
			cfg := mtls()
			cfg.VerifySAN = nil
			Expect(proxyconfig.WriteValidationContext(dir, cfg)).To(Succeed())
			_, secrets, err := envoyvalidate.Secrets(readFile(dir, proxyconfig.ValidationContextFile))
			Expect(err).NotTo(HaveOccurred())
			Expect(secrets[0].GetValidationContext().GetMatchTypedSubjectAltNames()).To(BeEmpty())
		})
	})

	Describe("atomic writes", func() {
		It("writes mode 0640 files, leaves no temp files and replaces by rename", func() {
			mappings := []proxyconfig.Mapping{{AppPort: 8080, ProxyPort: 61001}}
			Expect(proxyconfig.Write(dir, mtls(), mappings, 61002, leafPEM, keyPEM, "1")).To(Succeed())
			Expect(entries(dir)).To(ConsistOf(
				"envoy.yaml", "sds-id-cert-and-key.yaml", "sds-id-validation-context.yaml"))
			for _, name := range entries(dir) {
				fi, err := os.Stat(filepath.Join(dir, name))
				Expect(err).NotTo(HaveOccurred())
				Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o640)), name)
			}

			before := inode(filepath.Join(dir, proxyconfig.CertAndKeyFile))
			Expect(proxyconfig.WriteCertAndKey(dir, leafPEM, keyPEM, "2")).To(Succeed())
			Expect(inode(filepath.Join(dir, proxyconfig.CertAndKeyFile))).NotTo(Equal(before),
				"a rename gives the file a new inode; that is what watchers of the directory see")
			Expect(entries(dir)).To(HaveLen(3))
			resp, _, err := envoyvalidate.Secrets(readFile(dir, proxyconfig.CertAndKeyFile))
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetVersionInfo()).To(Equal("2"))
		})

		It("removes its temp file when the rename fails", func() {
			Expect(os.MkdirAll(filepath.Join(dir, proxyconfig.CertAndKeyFile, "occupied"), 0o700)).To(Succeed())
			err := proxyconfig.WriteCertAndKey(dir, leafPEM, keyPEM, "1")
			Expect(err).To(HaveOccurred())
			Expect(entries(dir)).To(ConsistOf(proxyconfig.CertAndKeyFile))
		})

		It("fails when the directory does not exist", func() {
			err := proxyconfig.WriteCertAndKey(filepath.Join(dir, "missing"), leafPEM, keyPEM, "1")
			Expect(err).To(MatchError(ContainSubstring("write sds-id-cert-and-key.yaml")))
		})
	})

	It("builds Envoy's command line", func() {
		Expect(proxyconfig.Command("/etc/cf-assets/envoy", proxyconfig.Config{})).To(Equal([]string{
			"/etc/cf-assets/envoy", "-c", "/etc/cf-assets/envoy_config/envoy.yaml", "--drain-time-s", "900",
		}))
		Expect(proxyconfig.Command("/p", proxyconfig.Config{DrainTimeout: 5 * time.Second, ConfigDir: "/x"})).To(Equal([]string{
			"/p", "-c", "/x/envoy.yaml", "--drain-time-s", "5",
		}))
	})
})

func readTestdata(name string) []byte {
	data, err := os.ReadFile(filepath.Join("testdata", name))
	Expect(err).NotTo(HaveOccurred())
	return data
}

func readFile(dir, name string) []byte {
	data, err := os.ReadFile(filepath.Join(dir, name))
	Expect(err).NotTo(HaveOccurred())
	return data
}

func expectGolden(name string, got []byte) {
	path := filepath.Join("testdata", name)
	if *update {
		Expect(os.WriteFile(path, got, 0o644)).To(Succeed())
	}
	want, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred(), "run go test ./proxyconfig -update to create %s", path)
	Expect(string(got)).To(Equal(string(want)), "output differs from %s (go test ./proxyconfig -update rewrites it)", path)
}

func entries(dir string) []string {
	des, err := os.ReadDir(dir)
	Expect(err).NotTo(HaveOccurred())
	names := []string{}
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func inode(path string) uint64 {
	fi, err := os.Stat(path)
	Expect(err).NotTo(HaveOccurred())
	return fi.Sys().(*syscall.Stat_t).Ino
}
