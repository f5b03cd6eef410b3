package credmanager_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/lager/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"

	"github.com/cellagent/cellagent/credmanager"
)

var _ = Describe("loading the CA", func() {
	var (
		e      *env
		caDir  string
		verify func(m *credmanager.Manager, cred credmanager.Credential)
	)

	BeforeEach(func() {
		e = newEnv()
		caDir = GinkgoT().TempDir()
		verify = func(m *credmanager.Manager, cred credmanager.Credential) {
			certs := parseCerts(cred.CertPEM)
			roots := x509.NewCertPool()
			Expect(roots.AppendCertsFromPEM(m.CACertPEM())).To(BeTrue())
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{DNSName: "guid-1", Roots: roots, Intermediates: inter, CurrentTime: e.clock.Now()})
			Expect(err).NotTo(HaveOccurred())
		}
	})

	newWith := func(certPEM, keyPEM []byte) (*credmanager.Manager, error) {
		e.cfg.CACertFile, e.cfg.CAKeyFile = writeCA(caDir, certPEM, keyPEM)
		return credmanager.New(e.logger, e.cfg)
	}

	DescribeTable("accepts",
		func(o testCA) {
			ca := makeCA(o)
			m, err := newWith(ca.certPEM, ca.keyPEM)
			Expect(err).NotTo(HaveOccurred())
			cred, err := m.Issue(e.logger, identity("guid-1"))
			Expect(err).NotTo(HaveOccurred())
			verify(m, cred)
			Expect(parseCerts(cred.CertPEM)).To(HaveLen(2), "leaf and the CA")
			Expect(m.CACertPEM()).To(Equal(ca.certPEM))
		},
		Entry("an ECDSA CA, PKCS#8 key", testCA{}),
		Entry("an ECDSA CA, SEC1 key", testCA{keyFormat: "sec1"}),
		Entry("an RSA CA, PKCS#8 key", testCA{rsa: true}),
		Entry("an RSA CA, PKCS#1 key", testCA{rsa: true, keyFormat: "pkcs1"}),
	)

	It("signs with an RSA CA using an RSA signature", func() {
		ca := makeCA(testCA{rsa: true})
		m, err := newWith(ca.certPEM, ca.keyPEM)
		Expect(err).NotTo(HaveOccurred())
		cred, err := m.Issue(e.logger, identity("guid-1"))
		Expect(err).NotTo(HaveOccurred())
		Expect(parseCerts(cred.CertPEM)[0].SignatureAlgorithm).To(Equal(x509.SHA256WithRSA))
	})

	It("passes a chain file on: issuer first, then the certificates above it", func() {
		root := makeCA(testCA{commonName: "root"})
		mid := makeCA(testCA{commonName: "mid", parent: root})
		issuer := makeCA(testCA{commonName: "issuer", parent: mid})
		m, err := newWith(append(append(issuer.certPEM, mid.certPEM...), root.certPEM...), issuer.keyPEM)
		Expect(err).NotTo(HaveOccurred())
		Expect(m.CACertPEM()).To(Equal(root.certPEM))

		cred, err := m.Issue(e.logger, identity("guid-1"))
		Expect(err).NotTo(HaveOccurred())
		certs := parseCerts(cred.CertPEM)
		Expect(certs).To(HaveLen(4))
		Expect(certs[0].Issuer.CommonName).To(Equal("issuer"))
		Expect(certs[1].Equal(issuer.cert)).To(BeTrue())
		Expect(certs[2].Equal(mid.cert)).To(BeTrue())
		Expect(certs[3].Equal(root.cert)).To(BeTrue())
		verify(m, cred)
	})

	DescribeTable("fails at construction, naming the file and the problem",
		func(setup func() (certFile, keyFile string), fileIsKey bool, problem string) {
			e.cfg.CACertFile, e.cfg.CAKeyFile = setup()
			_, err := credmanager.New(e.logger, e.cfg)
			Expect(err).To(HaveOccurred())
			named := e.cfg.CACertFile
			if fileIsKey {
				named = e.cfg.CAKeyFile
			}
			Expect(err.Error()).To(ContainSubstring(named))
			Expect(err.Error()).To(ContainSubstring(problem))
		},
		Entry("key of another CA", func() (string, string) {
			return writeCA(caDir, makeCA(testCA{}).certPEM, makeCA(testCA{}).keyPEM)
		}, true, "does not match"),
		Entry("RSA key for an ECDSA certificate", func() (string, string) {
			return writeCA(caDir, makeCA(testCA{}).certPEM, makeCA(testCA{rsa: true}).keyPEM)
		}, true, "does not match"),
		Entry("expired CA", func() (string, string) {
			ca := makeCA(testCA{notBefore: epoch.Add(-48 * time.Hour), notAfter: epoch.Add(-time.Hour)})
			return writeCA(caDir, ca.certPEM, ca.keyPEM)
		}, false, "expired at 2026-11-27T12:00:00Z"),
		Entry("CA not valid yet", func() (string, string) {
			ca := makeCA(testCA{notBefore: epoch.Add(time.Hour)})
			return writeCA(caDir, ca.certPEM, ca.keyPEM)
		}, false, "not valid before"),
		Entry("expired certificate further up the chain", func() (string, string) {
			root := makeCA(testCA{commonName: "root", notBefore: epoch.Add(-48 * time.Hour), notAfter: epoch.Add(-time.Hour)})
			issuer := makeCA(testCA{commonName: "issuer", parent: root})
			return writeCA(caDir, append(issuer.certPEM, root.certPEM...), issuer.keyPEM)
		}, false, `certificate 2 ("root") expired`),
		Entry("not a CA (CA:FALSE)", func() (string, string) {
			ca := makeCA(testCA{notCA: true})
			return writeCA(caDir, ca.certPEM, ca.keyPEM)
		}, false, "is not a CA"),
		Entry("no keyCertSign usage", func() (string, string) {
			ca := makeCA(testCA{noCertSign: true})
			return writeCA(caDir, ca.certPEM, ca.keyPEM)
		}, false, "lacks the keyCertSign key usage"),
		Entry("chain out of order", func() (string, string) {
			root := makeCA(testCA{commonName: "root"})
			issuer := makeCA(testCA{commonName: "issuer", parent: root})
			other := makeCA(testCA{commonName: "other"})
			return writeCA(caDir, append(issuer.certPEM, other.certPEM...), issuer.keyPEM)
		}, false, "chain out of order"),
		Entry("missing certificate file", func() (string, string) {
			_, key := writeCA(caDir, nil, makeCA(testCA{}).keyPEM)
			return filepath.Join(caDir, "nope.crt"), key
		}, false, "no such file or directory"),
		Entry("missing key file", func() (string, string) {
			cert, _ := writeCA(caDir, makeCA(testCA{}).certPEM, nil)
			return cert, filepath.Join(caDir, "nope.key")
		}, true, "no such file or directory"),
		Entry("unreadable certificate file (a directory)", func() (string, string) {
			_, key := writeCA(caDir, nil, makeCA(testCA{}).keyPEM)
			return caDir, key
		}, false, "is a directory"),
		Entry("no PEM in the certificate file", func() (string, string) {
			return writeCA(caDir, []byte("garbage"), makeCA(testCA{}).keyPEM)
		}, false, "no CERTIFICATE PEM block"),
		Entry("no key in the key file", func() (string, string) {
			ca := makeCA(testCA{})
			return writeCA(caDir, ca.certPEM, ca.certPEM)
		}, true, "no private key PEM block"),
		Entry("encrypted key", func() (string, string) {
			return writeCA(caDir, makeCA(testCA{}).certPEM, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"))
		}, true, "encrypted private keys are not supported"),
	)

	Describe("without a configured CA", func() {
		It("creates a dev CA once, says so loudly, and reuses it", func() {
			m1 := e.manager()
			certFile := filepath.Join(e.dataDir, "identity", "ca.crt")
			keyFile := filepath.Join(e.dataDir, "identity", "ca.key")
			Expect(e.logger).To(gbytes.Say("dev-ca-created"))
			Expect(e.logger).To(gbytes.Say("dev-ca-in-use"))
			Expect(e.logger.LogMessages()).To(ContainElement("test.credmanager.dev-ca-in-use"))
			Expect(e.logger.Logs()[len(e.logger.Logs())-1].LogLevel).To(Equal(lager.ERROR))

			fi, err := os.Stat(keyFile)
			Expect(err).NotTo(HaveOccurred())
			Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o600)))
			caPEM, err := os.ReadFile(certFile)
			Expect(err).NotTo(HaveOccurred())
			Expect(m1.CACertPEM()).To(Equal(caPEM))

			ca := parseCerts(caPEM)[0]
			Expect(ca.IsCA).To(BeTrue())
			Expect(ca.NotAfter.Sub(epoch)).To(BeNumerically("~", 10*365*24*time.Hour, 24*time.Hour))
			Expect(ca.PublicKeyAlgorithm).To(Equal(x509.ECDSA))

			cred, err := m1.Issue(e.logger, identity("guid-1"))
			Expect(err).NotTo(HaveOccurred())
			verify(m1, cred)

			e.logger = newEnv().logger
			m2 := e.manager()
			Expect(m2.CACertPEM()).To(Equal(caPEM), "the same CA on the next start")
			Expect(e.logger.LogMessages()).NotTo(ContainElement(ContainSubstring("dev-ca-created")))
			Expect(e.logger.LogMessages()).To(ContainElement(ContainSubstring("dev-ca-in-use")))
			verify(m2, cred)
		})

		It("refuses a dev CA whose key is gone rather than replacing a CA others may trust", func() {
			e.manager()
			Expect(os.Remove(filepath.Join(e.dataDir, "identity", "ca.key"))).To(Succeed())
			_, err := credmanager.New(e.logger, e.cfg)
			Expect(err).To(MatchError(ContainSubstring(filepath.Join(e.dataDir, "identity", "ca.key"))))
		})
	})
})
