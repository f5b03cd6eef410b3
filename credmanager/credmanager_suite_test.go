package credmanager_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/tedsuo/ifrit"
	"go.uber.org/goleak"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/credmanager"
)

func TestCredmanager(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Credmanager Suite")
}

// Every spec must leave no goroutine behind (rotation loops, ifrit).
// Registered first, so this cleanup runs after every other one.
var _ = BeforeEach(func() {
	ignore := goleak.IgnoreCurrent()
	DeferCleanup(func() { goleak.VerifyNone(GinkgoT(), ignore) })
})

var epoch = time.Date(2026, 11, 27, 13, 0, 0, 0, time.UTC)

// testCA describes a CA certificate for makeCA.
type testCA struct {
	rsa            bool
	notCA          bool
	noCertSign     bool
	notBefore      time.Time
	notAfter       time.Time
	parent         *issued // nil: self-signed
	keyFormat      string  // "pkcs8" (default), "sec1", "pkcs1"
	commonName     string
	maxPathLenZero bool
}

type issued struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	keyPEM  []byte
}

func makeCA(o testCA) *issued {
	var key crypto.Signer
	var err error
	if o.rsa {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	Expect(err).NotTo(HaveOccurred())
	if o.notBefore.IsZero() {
		o.notBefore = epoch.Add(-24 * time.Hour)
	}
	if o.notAfter.IsZero() {
		o.notAfter = epoch.Add(5 * 365 * 24 * time.Hour)
	}
	if o.commonName == "" {
		o.commonName = "test CA"
	}
	usage := x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	if o.noCertSign {
		usage = x509.KeyUsageDigitalSignature
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: o.commonName},
		NotBefore:             o.notBefore,
		NotAfter:              o.notAfter,
		KeyUsage:              usage,
		BasicConstraintsValid: true,
		IsCA:                  !o.notCA,
	}
	parentCert, parentKey := tmpl, key
	if o.parent != nil {
		parentCert, parentKey = o.parent.cert, o.parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), parentKey)
	Expect(err).NotTo(HaveOccurred())
	cert, err := x509.ParseCertificate(der)
	Expect(err).NotTo(HaveOccurred())

	var block *pem.Block
	switch o.keyFormat {
	case "sec1":
		b, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
		Expect(err).NotTo(HaveOccurred())
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: b}
	case "pkcs1":
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))}
	default:
		b, err := x509.MarshalPKCS8PrivateKey(key)
		Expect(err).NotTo(HaveOccurred())
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: b}
	}
	return &issued{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(block),
	}
}

// writeCA writes certPEM and keyPEM into dir and returns the file names.
func writeCA(dir string, certPEM, keyPEM []byte) (string, string) {
	certFile := filepath.Join(dir, "ca.crt")
	keyFile := filepath.Join(dir, "ca.key")
	Expect(os.WriteFile(certFile, certPEM, 0o644)).To(Succeed())
	Expect(os.WriteFile(keyFile, keyPEM, 0o600)).To(Succeed())
	return certFile, keyFile
}

// env is one Manager over a temp data dir with a fake clock.
type env struct {
	dataDir string
	clock   *fakeclock.FakeClock
	logger  *lagertest.TestLogger
	cfg     credmanager.Config
}

func newEnv() *env {
	dataDir := GinkgoT().TempDir()
	clk := fakeclock.NewFakeClock(epoch)
	return &env{
		dataDir: dataDir,
		clock:   clk,
		logger:  lagertest.NewTestLogger("test"),
		cfg:     credmanager.Config{DataDir: dataDir, Clock: clk},
	}
}

func (e *env) manager() *credmanager.Manager {
	m, err := credmanager.New(e.logger, e.cfg)
	Expect(err).NotTo(HaveOccurred())
	return m
}

// run starts m and stops it when the spec ends (before the leak check).
func run(m *credmanager.Manager) ifrit.Process {
	p := ifrit.Invoke(m)
	DeferCleanup(func() {
		p.Signal(os.Interrupt)
		Eventually(p.Wait()).Should(Receive(BeNil()))
	})
	return p
}

func identity(guid string) credmanager.Identity {
	return credmanager.Identity{
		GUID:                guid,
		OrganizationalUnits: []string{"organization:o1", "space:s1", "app:a1"},
		UID:                 os.Getuid(),
		GID:                 os.Getgid(),
	}
}

func parseCerts(data []byte) []*x509.Certificate {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return certs
		}
		Expect(block.Type).To(Equal("CERTIFICATE"))
		c, err := x509.ParseCertificate(block.Bytes)
		Expect(err).NotTo(HaveOccurred())
		certs = append(certs, c)
	}
}

func parseKey(data []byte) crypto.Signer {
	block, rest := pem.Decode(data)
	Expect(block).NotTo(BeNil())
	Expect(rest).To(BeEmpty())
	k, err := parseDiegoKey(block)
	Expect(err).NotTo(HaveOccurred())
	return k
}

// parseDiegoKey accepts only the encodings Diego-era readers accept:
// PKCS#1 for RSA, SEC1 for ECDSA (never PKCS#8).
func parseDiegoKey(block *pem.Block) (crypto.Signer, error) {
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	}
	return nil, fmt.Errorf("instance key is a %q block, want RSA PRIVATE KEY or EC PRIVATE KEY", block.Type)
}

// pairMatches reports whether the key of keyPEM belongs to the first
// certificate of certPEM.
func pairMatches(certPEM, keyPEM []byte) bool {
	certs := parseCerts(certPEM)
	Expect(certs).NotTo(BeEmpty())
	pub := parseKey(keyPEM).Public().(interface{ Equal(crypto.PublicKey) bool })
	return pub.Equal(certs[0].PublicKey)
}
