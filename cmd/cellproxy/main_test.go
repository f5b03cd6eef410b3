package main_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"

	"github.com/cellagent/cellagent/execcheck"
	"github.com/cellagent/cellagent/proxyconfig"
)

func TestCellproxy(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "cellproxy Suite")
}

var binary string

var _ = SynchronizedBeforeSuite(func() []byte {
	path, err := gexec.BuildWithEnvironment("github.com/cellagent/cellagent/cmd/cellproxy", []string{"CGO_ENABLED=0"})
	Expect(err).NotTo(HaveOccurred())
	return []byte(path)
}, func(path []byte) { binary = string(path) })

var _ = SynchronizedAfterSuite(func() {}, gexec.CleanupBuildArtifacts)

var _ = Describe("cellproxy", func() {
	var (
		dir       string
		proxyPort uint16
		adminPort uint16
		backend   net.Listener
		certPool  *x509.CertPool
	)

	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		backend = listenSafe()
		go func() {
			for {
				c, err := backend.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
			}
		}()
		DeferCleanup(backend.Close)

		ports := freePorts(2)
		proxyPort, adminPort = ports[0], ports[1]
		certPEM, keyPEM, pool := selfSigned("instance-guid")
		certPool = pool
		mappings := []proxyconfig.Mapping{{AppPort: uint16(backend.Addr().(*net.TCPAddr).Port), ProxyPort: proxyPort}}
		Expect(proxyconfig.Write(dir, proxyconfig.Config{ConfigDir: dir}, mappings, adminPort, certPEM, keyPEM, "1")).To(Succeed())
	})

	start := func(args ...string) *gexec.Session {
		s, err := gexec.Start(exec.Command(binary, args...), GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		return s
	}

	ready := func() int {
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).
			Get(fmt.Sprintf("http://127.0.0.1:%d/ready", adminPort))
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	for _, flag := range []string{"-c", "--config-path"} {
		It("serves with Envoy's flags ("+flag+") and exits 0 on SIGTERM", func() {
			s := start(flag, filepath.Join(dir, "envoy.yaml"), "--drain-time-s", "5")
			Eventually(ready, 10*time.Second).Should(Equal(200))

			c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", proxyPort), &tls.Config{RootCAs: certPool, ServerName: "instance-guid"})
			Expect(err).NotTo(HaveOccurred())
			_, err = c.Write([]byte("ping"))
			Expect(err).NotTo(HaveOccurred())
			buf := make([]byte, 4)
			_, err = io.ReadFull(c, buf)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(buf)).To(Equal("ping"))
			c.Close()

			s.Signal(syscall.SIGTERM)
			Eventually(s, 10*time.Second).Should(gexec.Exit(0))
			Expect(s.Err).To(gbytes.Say("cellproxy.proxy.run.ready"))
			Expect(s.Err).To(gbytes.Say("drain"))
		})
	}

	It("refuses a config it does not understand, naming the field", func() {
		path := filepath.Join(dir, "envoy.yaml")
		data, err := os.ReadFile(path)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(path, []byte(strings.Replace(string(data),
			"envoy.filters.network.tcp_proxy", "envoy.filters.network.redis_proxy", 1)), 0o600)).To(Succeed())
		s := start("-c", path)
		Eventually(s, 10*time.Second).Should(gexec.Exit(1))
		Expect(s.Err).To(gbytes.Say(`filters\[0\].name: unsupported filter "envoy.filters.network.redis_proxy"`))
	})

	It("checks a configuration with --mode validate", func() {
		s := start("--mode", "validate", "-c", filepath.Join(dir, "envoy.yaml"))
		Eventually(s, 10*time.Second).Should(gexec.Exit(0))
		Expect(s.Err).To(gbytes.Say("OK"))
		Expect(ready()).To(Equal(0), "validate must not bind the admin port")
	})

	It("refuses a stray argument with the usage", func() {
		s := start("-c", filepath.Join(dir, "envoy.yaml"), "extra")
		Eventually(s, 10*time.Second).Should(gexec.Exit(2))
		Expect(s.Err).To(gbytes.Say(`unexpected argument "extra"\nusage: cellproxy -c FILE`))
		Expect(ready()).To(Equal(0), "it must not serve")
	})

	It("is static even from a plain go build with cgo on (it runs in a busybox rootfs)", func() {
		if _, err := exec.LookPath("gcc"); err != nil {
			Skip("no C compiler: cgo is off anyway")
		}
		path, err := gexec.BuildWithEnvironment("github.com/cellagent/cellagent/cmd/cellproxy", []string{"CGO_ENABLED=1"})
		Expect(err).NotTo(HaveOccurred())
		Expect(execcheck.Static(path)).To(Succeed())
	})

	It("needs -c", func() {
		s := start()
		Eventually(s, 10*time.Second).Should(gexec.Exit(2))
		Expect(s.Err).To(gbytes.Say("-c"))
	})

	It("does not link Envoy's API types", func() {
		out, err := exec.Command("go", "list", "-deps", "github.com/cellagent/cellagent/cmd/cellproxy").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).NotTo(ContainSubstring("envoyproxy"))
		Expect(string(out)).NotTo(ContainSubstring("google.golang.org/protobuf"))
	})
})

func selfSigned(name string) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		IsCA:         true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	Expect(err).NotTo(HaveOccurred())
	cert, err := x509.ParseCertificate(der)
	Expect(err).NotTo(HaveOccurred())
	keyDER, err := x509.MarshalECPrivateKey(key)
	Expect(err).NotTo(HaveOccurred())
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), pool
}

// Test ports come from [20000, 32000): below the kernel's ephemeral range
// and outside the agent's host-port range (40000-59999), where other tests
// on this machine install CNI DNAT rules that also catch 127.0.0.1.
func listenSafe() net.Listener {
	var err error
	for i := 0; i < 100; i++ {
		var ln net.Listener
		ln, err = net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", 20000+mrand.IntN(12000)))
		if err == nil {
			return ln
		}
	}
	Fail(fmt.Sprintf("no free test port: %v", err))
	return nil
}

func freePorts(n int) []uint16 {
	var ports []uint16
	var lns []net.Listener
	for i := 0; i < n; i++ {
		ln := listenSafe()
		lns = append(lns, ln)
		ports = append(ports, uint16(ln.Addr().(*net.TCPAddr).Port))
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
