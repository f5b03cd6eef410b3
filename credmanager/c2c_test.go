package credmanager_test

import (
	"crypto/x509"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("IssueC2C", func() {
	It("issues Diego's c2c certificate: CN guid, SANs guid then the internal route hostnames, no IP, signed by the identity CA", func() {
		e := newEnv()
		m := e.manager()
		cred, err := m.IssueC2C("guid-1", []string{"app:a1"}, []string{"app.apps.internal", "0.app.apps.internal"})
		Expect(err).NotTo(HaveOccurred())
		leaf := parseCerts(cred.CertPEM)[0]
		Expect(leaf.Subject.CommonName).To(Equal("guid-1"))
		Expect(leaf.Subject.OrganizationalUnit).To(Equal([]string{"app:a1"}))
		Expect(leaf.DNSNames).To(Equal([]string{"guid-1", "app.apps.internal", "0.app.apps.internal"}))
		Expect(leaf.IPAddresses).To(BeEmpty())
		Expect(pairMatches(cred.CertPEM, cred.KeyPEM)).To(BeTrue())
		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM(m.CACertPEM())).To(BeTrue())
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "app.apps.internal", CurrentTime: leaf.NotBefore})
		Expect(err).NotTo(HaveOccurred())
	})

	It("refuses a hostname that is not a DNS name", func() {
		_, err := newEnv().manager().IssueC2C("guid-1", nil, []string{"bad host"})
		Expect(err).To(MatchError(ContainSubstring(`dns name "bad host"`)))
	})
})
