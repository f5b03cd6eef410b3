package proxy_test

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/onsi/gomega/gbytes"
	"github.com/tedsuo/ifrit"
	"go.uber.org/goleak"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/proxy"
	"github.com/cellagent/cellagent/proxyconfig"
)

var _ = Describe("Proxy", func() {
	var (
		f          *fixture
		opts       fixtureOpts
		goroutines goleak.Option
	)

	BeforeEach(func() {
		goroutines = goleak.IgnoreCurrent()
		opts = fixtureOpts{}
	})

	JustBeforeEach(func() {
		f = newFixture(opts)
		f.start()
	})

	AfterEach(func() {
		f.stop()
		goleak.VerifyNone(GinkgoT(), goroutines)
	})

	Describe("proxying", func() {
		BeforeEach(func() { opts.ports = 3 })

		It("terminates TLS with the instance certificate and reaches each listener's app", func() {
			for i := range f.mappings {
				c, err := f.dial(i, f.clientTLS())
				Expect(err).NotTo(HaveOccurred())
				st := c.ConnectionState()
				Expect(st.Version).To(BeNumerically(">=", tls.VersionTLS12))
				Expect(st.PeerCertificates[0].DNSNames).To(ContainElement(instanceGUID))
				Expect(roundTrip(c, "hello")).To(Equal(f.backends[i].name + ": hello"))
				Expect(roundTrip(c, "again")).To(Equal(f.backends[i].name + ": again"))
				Expect(c.Close()).To(Succeed())
			}
		})

		It("refuses TLS 1.1 and offers only the configured TLS 1.2 ciphers", func() {
			_, err := f.dial(0, &tls.Config{RootCAs: f.ca.pool(), ServerName: instanceGUID, MaxVersion: tls.VersionTLS11})
			Expect(err).To(HaveOccurred())

			_, err = f.dial(0, &tls.Config{
				RootCAs: f.ca.pool(), ServerName: instanceGUID, MaxVersion: tls.VersionTLS12,
				CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA},
			})
			Expect(err).To(HaveOccurred())

			c, err := f.dial(0, &tls.Config{
				RootCAs: f.ca.pool(), ServerName: instanceGUID, MaxVersion: tls.VersionTLS12,
				CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
			})
			Expect(err).NotTo(HaveOccurred())
			Expect(c.ConnectionState().CipherSuite).To(Equal(tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256))
			Expect(roundTrip(c, "tls12")).To(Equal("app-0: tls12"))
			c.Close()
		})

		It("passes a half-close through in both directions", func() {
			c, err := f.dial(0, f.clientTLS())
			Expect(err).NotTo(HaveOccurred())
			defer c.Close()
			_, err = c.Write([]byte("one\ntwo\n"))
			Expect(err).NotTo(HaveOccurred())
			Expect(c.CloseWrite()).To(Succeed())
			// The app sees EOF, answers what it had and closes its side;
			// the client reads both answers, then EOF.
			rest, err := io.ReadAll(c)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(rest)).To(Equal("app-0: one\napp-0: two\n"))
		})

		It("fails the handshake when the app is not listening, so a router retries elsewhere", func() {
			f.backends[1].close()
			_, err := f.dial(1, f.clientTLS())
			Expect(err).To(HaveOccurred())
			Expect(f.logger).To(gbytes.Say("upstream-connect-failed"))
		})
	})

	Describe("certificate rotation", func() {
		It("serves a rewritten SDS file to new handshakes and keeps open connections", func() {
			old, err := f.dial(0, f.clientTLS())
			Expect(err).NotTo(HaveOccurred())
			defer old.Close()
			Expect(roundTrip(old, "before")).To(Equal("app-0: before"))
			Expect(serialOf(old)).To(Equal(f.server.serial()))

			next := f.ca.issue(instanceGUID, instanceGUID)
			Expect(proxyconfig.WriteCertAndKey(f.dir, next.certPEM, next.keyPEM, "2")).To(Succeed())
			Eventually(func() string {
				f.clock.Increment(pollInterval)
				return f.servedSerial(0)
			}, ioTimeout).Should(Equal(next.serial()))

			Expect(roundTrip(old, "after")).To(Equal("app-0: after"))
			Expect(serialOf(old)).To(Equal(f.server.serial()))

			_, body := f.adminGet("/certs")
			Expect(certSerials(body)).To(Equal([]string{next.serial()}))
			Expect(f.logger).To(gbytes.Say("secret-reloaded"))
		})

		Describe("POST /secrets/reload", func() {
			BeforeEach(func() { opts.ports = 2 })

			It("loads a rewritten SDS file at once, without a poll, and answers the serial every listener now serves", func() {
				next := f.ca.issue(instanceGUID, instanceGUID)
				Expect(proxyconfig.WriteCertAndKey(f.dir, next.certPEM, next.keyPEM, "2")).To(Succeed())
				// No poll has run (the fake clock stands still): GET
				// reports what handshakes get, the old certificate.
				Expect(f.secrets("GET", "/secrets").Listeners).To(HaveEach(HaveField("SerialNumber", f.server.serial())))
				Expect(f.servedSerial(0)).To(Equal(f.server.serial()))

				report := f.secrets("POST", "/secrets/reload")
				Expect(report.Errors).To(BeEmpty())
				Expect(report.Listeners).To(HaveLen(2))
				for _, l := range report.Listeners {
					Expect(l).To(Equal(proxy.ListenerSecret{Listener: l.Listener, Secret: proxyconfig.CertAndKeySecret, Version: "2", SerialNumber: next.serial()}))
				}
				Expect(f.servedSerial(0)).To(Equal(next.serial()))
				Expect(f.servedSerial(1)).To(Equal(next.serial()))
				Expect(f.secrets("GET", "/secrets").Listeners).To(HaveEach(HaveField("SerialNumber", next.serial())))
			})

			It("answers the kept certificate and the reason when the new file does not load", func() {
				Expect(os.WriteFile(filepath.Join(f.dir, "tmp"), []byte("resources: [{name: x}]\n"), 0o600)).To(Succeed())
				Expect(os.Rename(filepath.Join(f.dir, "tmp"), filepath.Join(f.dir, proxyconfig.CertAndKeyFile))).To(Succeed())
				report := f.secrets("POST", "/secrets/reload")
				Expect(report.Errors).To(ConsistOf(ContainSubstring(proxyconfig.CertAndKeyFile)))
				Expect(report.Listeners).To(HaveEach(HaveField("SerialNumber", f.server.serial())))
				Expect(f.servedSerial(0)).To(Equal(f.server.serial()))
			})

			It("answers without errors when nothing changed", func() {
				report := f.secrets("POST", "/secrets/reload")
				Expect(report.Errors).To(BeEmpty())
				Expect(report.Listeners).To(HaveEach(HaveField("Version", "1")))
			})
		})

		It("keeps the loaded certificate when the new file is broken", func() {
			Expect(os.WriteFile(filepath.Join(f.dir, "tmp"), []byte("resources: [{name: x}]\n"), 0o600)).To(Succeed())
			Expect(os.Rename(filepath.Join(f.dir, "tmp"), filepath.Join(f.dir, proxyconfig.CertAndKeyFile))).To(Succeed())
			Eventually(func() *lagertest.TestLogger {
				f.clock.Increment(pollInterval)
				return f.logger
			}, ioTimeout).Should(gbytes.Say("secret-reload-failed"))
			Expect(f.servedSerial(0)).To(Equal(f.server.serial()))
		})
	})

	Describe("client certificates", func() {
		var clientCA *testCA

		BeforeEach(func() {
			clientCA = newCA("router-ca")
			opts.mtls = true
			opts.clientCA = clientCA
			opts.verifySAN = []string{"gorouter.service.cf.internal", "spiffe://cf/gorouter"}
		})

		try := func(cert *issued, maxVersion uint16) error {
			cfg := f.clientTLS()
			cfg.MaxVersion = maxVersion
			if cert != nil {
				cfg.Certificates = []tls.Certificate{cert.tlsCert()}
			}
			c, err := f.dial(0, cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			got, err := roundTrip(c, "hi")
			if err == nil && got != "app-0: hi" {
				return errors.New("unexpected answer " + got)
			}
			return err
		}

		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			version := v
			Context(tls.VersionName(version), func() {
				It("rejects a client without a certificate", func() {
					Expect(try(nil, version)).To(HaveOccurred())
				})

				It("rejects a certificate from another CA", func() {
					other := newCA("other-ca").issue("gorouter", "gorouter.service.cf.internal")
					Expect(try(&other, version)).To(HaveOccurred())
				})

				It("accepts a certificate with a matching DNS or URI SAN", func() {
					dns := clientCA.issue("gorouter", "gorouter.service.cf.internal")
					Expect(try(&dns, version)).To(Succeed())
					uri := clientCA.issue("gorouter", "spiffe://cf/gorouter")
					Expect(try(&uri, version)).To(Succeed())
				})

				It("rejects a valid certificate whose SAN does not match", func() {
					wrong := clientCA.issue("gorouter", "someone-else.service.cf.internal", "spiffe://cf/other")
					Expect(try(&wrong, version)).To(HaveOccurred())
				})
			})
		}

		It("picks up a new trusted CA and SAN list for new handshakes", func() {
			oldCert := clientCA.issue("gorouter", "gorouter.service.cf.internal")
			Expect(try(&oldCert, tls.VersionTLS13)).To(Succeed())

			nextCA := newCA("router-ca-2")
			cfg := f.cfg
			cfg.TrustedCAPEM = nextCA.pem
			cfg.VerifySAN = []string{"gorouter-2"}
			Expect(proxyconfig.WriteValidationContext(f.dir, cfg)).To(Succeed())
			nextCert := nextCA.issue("gorouter", "gorouter-2")
			Eventually(func() error {
				f.clock.Increment(pollInterval)
				return try(&nextCert, tls.VersionTLS13)
			}, ioTimeout).Should(Succeed())
			Expect(try(&oldCert, tls.VersionTLS13)).To(HaveOccurred())
		})

		It("lists the trusted CA in /certs", func() {
			_, body := f.adminGet("/certs")
			var report proxy.CertsReport
			Expect(json.Unmarshal([]byte(body), &report)).To(Succeed())
			Expect(report.Certificates).To(HaveLen(1))
			Expect(report.Certificates[0].CACert).To(HaveLen(1))
			Expect(report.Certificates[0].CACert[0].SerialNumber).To(Equal(issued{cert: clientCA.cert}.serial()))
		})
	})

	Describe("admin", func() {
		It("answers /ready with LIVE and /certs with the served certificate", func() {
			code, body := f.adminGet("/ready")
			Expect(code).To(Equal(200))
			Expect(body).To(Equal("LIVE\n"))

			code, body = f.adminGet("/certs")
			Expect(code).To(Equal(200))
			var report proxy.CertsReport
			Expect(json.Unmarshal([]byte(body), &report)).To(Succeed())
			Expect(report.Certificates).To(HaveLen(1))
			leaf := report.Certificates[0].CertChain[0]
			Expect(leaf.SerialNumber).To(Equal(f.server.serial()))
			Expect(leaf.ExpirationTime).To(Equal(f.server.cert.NotAfter.UTC().Format(time.RFC3339)))
			Expect(leaf.SubjectAltNames).To(Equal([]proxy.SubjectAltName{{DNS: instanceGUID}, {IPAddress: "10.255.0.7"}}))
			Expect(leaf.DaysUntilExpiration).To(Equal("0"))
		})
	})

	Describe("drain", func() {
		BeforeEach(func() { opts.drain = time.Hour })

		It("stops accepting, keeps open connections until they close, then exits 0", func() {
			open, err := f.dial(0, f.clientTLS())
			Expect(err).NotTo(HaveOccurred())
			Expect(roundTrip(open, "before")).To(Equal("app-0: before"))

			proc := f.proc
			proc.Signal(syscall.SIGTERM)
			Eventually(func() int { code, _ := f.adminGet("/ready"); return code }, ioTimeout).Should(Equal(503))
			_, body := f.adminGet("/ready")
			Expect(body).To(Equal("DRAINING\n"))
			Eventually(func() error { _, err := net.Dial("tcp", f.addr(0)); return err }, ioTimeout).
				Should(MatchError(syscall.ECONNREFUSED))

			Expect(roundTrip(open, "during")).To(Equal("app-0: during"))
			Consistently(proc.Wait(), 200*time.Millisecond).ShouldNot(Receive())

			Expect(open.Close()).To(Succeed())
			Eventually(proc.Wait(), ioTimeout).Should(Receive(BeNil()))
			f.proc = nil
		})

		It("closes connections still open at the drain timeout", func() {
			open, err := f.dial(0, f.clientTLS())
			Expect(err).NotTo(HaveOccurred())
			defer open.Close()
			Expect(roundTrip(open, "before")).To(Equal("app-0: before"))

			proc := f.proc
			proc.Signal(syscall.SIGTERM)
			Eventually(func() int { code, _ := f.adminGet("/ready"); return code }, ioTimeout).Should(Equal(503))
			exited := proc.Wait()
			Consistently(exited, 200*time.Millisecond).ShouldNot(Receive())
			Eventually(func() bool {
				f.clock.Increment(time.Hour)
				select {
				case err := <-exited:
					Expect(err).NotTo(HaveOccurred())
					return true
				default:
					return false
				}
			}, ioTimeout).Should(BeTrue())
			f.proc = nil
			_, err = roundTrip(open, "after")
			Expect(err).To(HaveOccurred())
		})

		It("closes at once on a second signal", func() {
			open, err := f.dial(0, f.clientTLS())
			Expect(err).NotTo(HaveOccurred())
			defer open.Close()
			Expect(roundTrip(open, "before")).To(Equal("app-0: before"))
			f.proc.Signal(syscall.SIGTERM)
			Eventually(func() int { code, _ := f.adminGet("/ready"); return code }, ioTimeout).Should(Equal(503))
			f.proc.Signal(syscall.SIGINT)
			Eventually(f.proc.Wait(), ioTimeout).Should(Receive(BeNil()))
			f.proc = nil
			Expect(f.logger).To(gbytes.Say("drain-interrupted"))
		})
	})

	Describe("start", func() {
		It("fails when a listener's port is taken", func() {
			p, err := f.newProxy() // the running proxy holds every port
			Expect(err).NotTo(HaveOccurred())
			proc := ifrit.Background(p)
			Eventually(proc.Wait(), ioTimeout).Should(Receive(MatchError(ContainSubstring("admin listener"))))
		})
	})
})
