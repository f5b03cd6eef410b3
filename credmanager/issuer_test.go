package credmanager_test

import (
	"crypto/x509"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/credmanager"
)

var _ = Describe("Issuer", func() {
	It("is made before the Manager, which then signs with it: one CA for the proxy's c2c and the instance certificates", func() {
		e := newEnv()
		issuer, err := credmanager.NewIssuer(e.logger, credmanager.Config{DataDir: e.dataDir, Clock: e.clock, Validity: time.Hour})
		Expect(err).NotTo(HaveOccurred())
		c2c, err := issuer.IssueC2C("guid-1", nil, []string{"app.apps.internal"})
		Expect(err).NotTo(HaveOccurred())

		m, err := credmanager.New(e.logger, credmanager.Config{DataDir: e.dataDir, Clock: e.clock, Issuer: issuer})
		Expect(err).NotTo(HaveOccurred())
		cred, err := m.Issue(e.logger, identity("guid-1"))
		Expect(err).NotTo(HaveOccurred())
		Expect(m.CACertPEM()).To(Equal(issuer.CACertPEM()))

		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM(issuer.CACertPEM())).To(BeTrue())
		for _, pem := range [][]byte{c2c.CertPEM, cred.CertPEM} {
			leaf := parseCerts(pem)[0]
			_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: e.clock.Now()})
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(cred.NotAfter.Sub(cred.NotBefore)).To(Equal(time.Hour+credmanager.Backdate), "the Issuer's validity")
	})

	It("is refused beside CA files, key type or validity of the Manager's own", func() {
		e := newEnv()
		issuer, err := credmanager.NewIssuer(e.logger, e.cfg)
		Expect(err).NotTo(HaveOccurred())
		for _, cfg := range []credmanager.Config{
			{DataDir: e.dataDir, Issuer: issuer, KeyType: credmanager.KeyTypeRSA2048},
			{DataDir: e.dataDir, Issuer: issuer, Validity: time.Hour},
			{DataDir: e.dataDir, Issuer: issuer, CACertFile: "/ca.crt", CAKeyFile: "/ca.key"},
		} {
			_, err := credmanager.New(e.logger, cfg)
			Expect(err).To(MatchError(ContainSubstring("are the Issuer's")))
		}
	})
})
