package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
)

func caPEM(name string) []byte {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	Expect(err).NotTo(HaveOccurred())
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// Issue 13 item 14: listen.tls.client_ca or proxy.trusted_ca set to the
// identity CA lets every instance certificate authenticate.
var _ = Describe("client CAs that trust the identity CA", func() {
	var (
		dir              string
		identity, others []byte
		write            func(name string, b []byte) string
	)
	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		identity, others = caPEM("instance identity"), caPEM("orchestrators")
		write = func(name string, b []byte) string {
			p := filepath.Join(dir, name)
			Expect(os.WriteFile(p, b, 0o600)).To(Succeed())
			return p
		}
	})
	withIdentity := func() config.Config {
		cfg := config.DefaultConfig()
		cfg.DataDir = dir
		cfg.Identity.CACert, cfg.Identity.CAKey = write("identity.crt", identity), write("identity.key", []byte("unused"))
		return cfg
	}

	It("refuses listen.tls.client_ca holding the identity CA, even as a copy in a bundle", func() {
		cfg := withIdentity()
		cfg.Listen.TLS.ClientCA = write("clients.pem", append(append([]byte{}, others...), identity...))
		Expect(cfg.Validate()).To(MatchError(ContainSubstring("listen.tls.client_ca " + cfg.Listen.TLS.ClientCA + " trusts the identity CA")))
	})

	It("refuses proxy.trusted_ca holding the identity CA", func() {
		cfg := withIdentity()
		cfg.Proxy.TrustedCA = write("copy-of-identity.pem", identity)
		Expect(cfg.Validate()).To(MatchError(ContainSubstring("proxy.trusted_ca")))
	})

	It("compares with the CA the agent made in data_dir when identity.ca_cert is not set", func() {
		cfg := config.DefaultConfig()
		cfg.DataDir = dir
		Expect(os.MkdirAll(filepath.Join(dir, "identity"), 0o700)).To(Succeed())
		write("identity/ca.crt", identity)
		cfg.Proxy.TrustedCA = write("trusted.pem", identity)
		Expect(cfg.Validate()).To(MatchError(ContainSubstring("proxy.trusted_ca")))
	})

	It("accepts other CAs", func() {
		cfg := withIdentity()
		cfg.Listen.TLS.ClientCA = write("clients.pem", others)
		cfg.Proxy.TrustedCA = write("peers.pem", caPEM("peers"))
		Expect(cfg.Validate()).To(Succeed())
	})
})
