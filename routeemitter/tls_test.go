package routeemitter_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/ginkgomon_v2"

	"github.com/cellagent/cellagent/routeemitter"
)

// testCA signs certificates for a TLS NATS server and its clients.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(name string) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	Expect(err).NotTo(HaveOccurred())
	cert, err := x509.ParseCertificate(der)
	Expect(err).NotTo(HaveOccurred())
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue answers a certificate and key (PEM) for cn, valid for 127.0.0.1.
func (ca *testCA) issue(cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	Expect(err).NotTo(HaveOccurred())
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	Expect(err).NotTo(HaveOccurred())
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func writeFile(dir, name string, b []byte) string {
	p := filepath.Join(dir, name)
	Expect(os.WriteFile(p, b, 0o600)).To(Succeed())
	return p
}

var _ = Describe("an external NATS with TLS and client certificates", func() {
	var (
		dir      string
		ca       *testCA
		url      string
		observer *nats.Conn
		rec      *recorder
		cfg      routeemitter.Config
	)

	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		ca = newTestCA("nats-ca")
		srvCert, srvKey := ca.issue("nats", x509.ExtKeyUsageServerAuth)
		pair, err := tls.X509KeyPair(srvCert, srvKey)
		Expect(err).NotTo(HaveOccurred())
		pool := x509.NewCertPool()
		pool.AddCert(ca.cert)
		ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
			TLS: true, TLSVerify: true, TLSTimeout: 2,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
				ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}})
		Expect(err).NotTo(HaveOccurred())
		go ns.Start()
		Expect(ns.ReadyForConnections(5 * time.Second)).To(BeTrue())
		DeferCleanup(ns.Shutdown)
		url = fmt.Sprintf("tls://127.0.0.1:%d", ns.Addr().(*net.TCPAddr).Port)

		caFile := writeFile(dir, "ca.pem", ca.pem)
		cliCert, cliKey := ca.issue("cellagent", x509.ExtKeyUsageClientAuth)
		certFile, keyFile := writeFile(dir, "client.pem", cliCert), writeFile(dir, "client.key", cliKey)
		observer, err = nats.Connect(url, nats.RootCAs(caFile), nats.ClientCert(certFile, keyFile))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(observer.Close)
		rec = record(observer)

		cfg = routeemitter.Config{URLs: []string{url}, DataDir: GinkgoT().TempDir(), CellID: "cell-1", Zone: "z1",
			ReconnectWait: 50 * time.Millisecond, Clock: fakeclock.NewFakeClock(time.Unix(1700000000, 0)),
			TLS: routeemitter.TLSFiles{CACert: caFile, Cert: certFile, Key: keyFile}}
	})

	start := func(cfg routeemitter.Config) *routeemitter.Emitter {
		e, err := routeemitter.New(lagertest.NewTestLogger("tls"), cfg, nil)
		Expect(err).NotTo(HaveOccurred())
		p := ifrit.Background(e)
		DeferCleanup(func() { ginkgomon_v2.Interrupt(p, 10*time.Second) })
		return e
	}

	It("connects with the configured CA and client certificate and registers routes", func() {
		e := start(cfg)
		Eventually(e.ConnectionState).Should(Equal(routeemitter.StateConnected))
		// As run in emitter_test: nats.go reports CONNECTED before the
		// emitter's loop has handled the connect, whose re-emission would
		// send a Register made before it a second time. The greet shows it
		// has been handled.
		Eventually(rec.greeted).Should(BeNumerically(">", 0))
		Expect(e.Register(lagertest.NewTestLogger("tls"), endpoint("g1"))).To(Succeed())
		Eventually(rec.registers).Should(Equal(1))
	})

	It("does not connect without a client certificate", func() {
		cfg.TLS.Cert, cfg.TLS.Key = "", ""
		e := start(cfg)
		Consistently(e.ConnectionState, time.Second).ShouldNot(Equal(routeemitter.StateConnected))
	})

	It("does not connect to a server whose certificate another CA signed", func() {
		cfg.TLS.CACert = writeFile(dir, "other-ca.pem", newTestCA("other").pem)
		e := start(cfg)
		Consistently(e.ConnectionState, time.Second).ShouldNot(Equal(routeemitter.StateConnected))
	})
})
