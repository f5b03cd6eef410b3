package credmanager_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/credmanager"
)

var _ = Describe("instance certificates", func() {
	var (
		e            *env
		root, interm *issued
	)

	BeforeEach(func() {
		e = newEnv()
		// A two-level CA: the file holds the intermediate (the issuer), then
		// the root, so instance.crt must carry both after the leaf.
		root = makeCA(testCA{commonName: "root CA"})
		interm = makeCA(testCA{commonName: "intermediate CA", parent: root})
		e.cfg.CACertFile, e.cfg.CAKeyFile = writeCA(GinkgoT().TempDir(), append(interm.certPEM, root.certPEM...), interm.keyPEM)
	})

	DescribeTable("every field, for each key type",
		func(kt credmanager.KeyType, check func(pub any) bool, keyUsage x509.KeyUsage) {
			e.cfg.KeyType = kt
			m := e.manager()
			id := identity("guid-1")
			id.IPs = []net.IP{net.ParseIP("10.255.0.7"), net.ParseIP("fd00::7")}

			cred, err := m.Issue(e.logger, id)
			Expect(err).NotTo(HaveOccurred())

			dir, err := m.HostDir("guid-1")
			Expect(err).NotTo(HaveOccurred())
			Expect(dir).To(Equal(filepath.Join(e.dataDir, "credentials", "guid-1")))
			certPEM, err := os.ReadFile(filepath.Join(dir, "instance.crt"))
			Expect(err).NotTo(HaveOccurred())
			keyPEM, err := os.ReadFile(filepath.Join(dir, "instance.key"))
			Expect(err).NotTo(HaveOccurred())
			Expect(certPEM).To(Equal(cred.CertPEM))
			Expect(keyPEM).To(Equal(cred.KeyPEM))

			certs := parseCerts(certPEM)
			Expect(certs).To(HaveLen(3), "leaf, intermediate, root")
			Expect(certs[1].Equal(interm.cert)).To(BeTrue())
			Expect(certs[2].Equal(root.cert)).To(BeTrue())
			leaf := certs[0]

			Expect(leaf.Subject.CommonName).To(Equal("guid-1"))
			Expect(leaf.DNSNames).To(ConsistOf("guid-1"))
			Expect(leaf.IPAddresses).To(HaveLen(2))
			Expect(leaf.IPAddresses[0]).To(Equal(net.IP{10, 255, 0, 7}))
			Expect(leaf.IPAddresses[1].Equal(net.ParseIP("fd00::7"))).To(BeTrue())
			Expect(leaf.Subject.OrganizationalUnit).To(ConsistOf("organization:o1", "space:s1", "app:a1"))

			Expect(leaf.SerialNumber.Sign()).To(Equal(1))
			Expect(leaf.SerialNumber.BitLen()).To(BeNumerically("<=", 128))
			Expect(leaf.SerialNumber.BitLen()).To(BeNumerically(">", 64), "random 128-bit serials are this short with p = 2^-64")
			Expect(cred.Serial).To(Equal(leaf.SerialNumber.Text(16)))

			Expect(leaf.NotBefore).To(Equal(epoch.Add(-time.Minute)))
			Expect(leaf.NotAfter).To(Equal(epoch.Add(24 * time.Hour)))
			Expect(cred.NotBefore).To(Equal(leaf.NotBefore))
			Expect(cred.NotAfter).To(Equal(leaf.NotAfter))
			Expect(cred.Rotations).To(Equal(0))

			Expect(leaf.ExtKeyUsage).To(ConsistOf(x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth))
			Expect(leaf.KeyUsage).To(Equal(keyUsage))
			Expect(leaf.IsCA).To(BeFalse())
			Expect(check(leaf.PublicKey)).To(BeTrue(), "public key type")
			Expect(pairMatches(certPEM, keyPEM)).To(BeTrue())
			// Diego writes PKCS#1 (credmanager.go privateKeyPEMBlockType);
			// Java's CF security provider rejects PKCS#8.
			kb, _ := pem.Decode(keyPEM)
			Expect(kb.Type).To(Equal(map[credmanager.KeyType]string{
				"":                           "EC PRIVATE KEY",
				credmanager.KeyTypeECDSAP256: "EC PRIVATE KEY",
				credmanager.KeyTypeRSA2048:   "RSA PRIVATE KEY",
				credmanager.KeyTypeRSA3072:   "RSA PRIVATE KEY",
			}[kt]))

			// What a router does: trust CACertPEM, take the rest from the peer.
			roots := x509.NewCertPool()
			Expect(roots.AppendCertsFromPEM(m.CACertPEM())).To(BeTrue())
			Expect(parseCerts(m.CACertPEM())[0].Equal(root.cert)).To(BeTrue())
			inter := x509.NewCertPool()
			inter.AddCert(certs[1])
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				_, err = leaf.Verify(x509.VerifyOptions{
					DNSName: "guid-1", Roots: roots, Intermediates: inter,
					CurrentTime: epoch, KeyUsages: []x509.ExtKeyUsage{usage},
				})
				Expect(err).NotTo(HaveOccurred())
			}

			// A fresh key and serial for every certificate.
			cred2, err := credmanager.Renew(m, e.logger, id, 1)
			Expect(err).NotTo(HaveOccurred())
			leaf2 := parseCerts(cred2.CertPEM)[0]
			Expect(leaf2.PublicKey).NotTo(Equal(leaf.PublicKey))
			Expect(cred2.Serial).NotTo(Equal(cred.Serial))
		},
		Entry("ecdsa-p256 (default)", credmanager.KeyType(""), func(pub any) bool {
			k, ok := pub.(*ecdsa.PublicKey)
			return ok && k.Curve == elliptic.P256()
		}, x509.KeyUsageDigitalSignature),
		Entry("ecdsa-p256", credmanager.KeyTypeECDSAP256, func(pub any) bool {
			k, ok := pub.(*ecdsa.PublicKey)
			return ok && k.Curve == elliptic.P256()
		}, x509.KeyUsageDigitalSignature),
		Entry("rsa-2048", credmanager.KeyTypeRSA2048, func(pub any) bool {
			k, ok := pub.(*rsa.PublicKey)
			return ok && k.N.BitLen() == 2048
		}, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment),
		Entry("rsa-3072", credmanager.KeyTypeRSA3072, func(pub any) bool {
			k, ok := pub.(*rsa.PublicKey)
			return ok && k.N.BitLen() == 3072
		}, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment),
	)

	It("omits IP SANs when no address is given and honours the configured validity", func() {
		e.cfg.Validity = 90 * time.Minute
		m := e.manager()
		cred, err := m.Issue(e.logger, identity("guid-1"))
		Expect(err).NotTo(HaveOccurred())
		leaf := parseCerts(cred.CertPEM)[0]
		Expect(leaf.IPAddresses).To(BeEmpty())
		Expect(leaf.NotAfter).To(Equal(epoch.Add(90 * time.Minute)))
	})

	DescribeTable("has the DER subject of a certificate made the way Diego's credmanager makes it",
		func(ous []string, wantString string) {
			m := e.manager()
			id := identity("guid-1")
			id.OrganizationalUnits = ous
			cred, err := m.Issue(e.logger, id)
			Expect(err).NotTo(HaveOccurred())
			leaf := parseCerts(cred.CertPEM)[0]

			// Diego: depot/containerstore/credmanager.go createCertificateTemplate.
			diego := &x509.Certificate{
				SerialNumber: big.NewInt(1),
				Subject:      pkix.Name{CommonName: "guid-1", OrganizationalUnit: ous},
			}
			der, err := x509.CreateCertificate(rand.Reader, diego, interm.cert, interm.key.Public(), interm.key)
			Expect(err).NotTo(HaveOccurred())
			want, err := x509.ParseCertificate(der)
			Expect(err).NotTo(HaveOccurred())
			Expect(leaf.RawSubject).To(Equal(want.RawSubject))
			Expect(leaf.Subject.String()).To(Equal(wantString))
		},
		Entry("CF's three OUs: one multi-valued RDN, then CN",
			[]string{"organization:o1", "space:s1", "app:a1"},
			"CN=guid-1,OU=app:a1+OU=space:s1+OU=organization:o1"),
		Entry("OUs needing UTF8String and PrintableString",
			[]string{"z-last-alphabetically", "team_a@example", "équipe", "a"},
			"CN=guid-1,OU=a+OU=équipe+OU=team_a@example+OU=z-last-alphabetically"),
		Entry("no OU", nil, "CN=guid-1"),
	)

	It("never lets a leaf outlive its CA", func() {
		short := makeCA(testCA{notAfter: epoch.Add(3 * time.Hour)})
		e.cfg.CACertFile, e.cfg.CAKeyFile = writeCA(GinkgoT().TempDir(), short.certPEM, short.keyPEM)
		m := e.manager()
		cred, err := m.Issue(e.logger, identity("guid-1"))
		Expect(err).NotTo(HaveOccurred())
		Expect(cred.NotAfter).To(Equal(short.cert.NotAfter))

		e.clock.Increment(3*time.Hour + time.Second)
		_, err = credmanager.Renew(m, e.logger, identity("guid-1"), 1)
		Expect(err).To(MatchError(ContainSubstring("expired")))
	})

	It("serialises Credential with the API's field names, without key material", func() {
		b, err := json.Marshal(credmanager.Credential{
			Serial: "ab12", NotBefore: epoch, NotAfter: epoch.Add(time.Hour), Rotations: 2,
			CertPEM: []byte("cert"), KeyPEM: []byte("secret"),
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(b).To(MatchJSON(`{"serial":"ab12","not_before":"2026-11-27T13:00:00Z","not_after":"2026-11-27T14:00:00Z","rotations":2}`))
	})

	It("spells serials in lower-case hex", func() {
		Expect(credmanager.FormatSerial(big.NewInt(0xABCDEF))).To(Equal("abcdef"))
	})

	DescribeTable("rejects bad configuration with every problem at once",
		func(cfg credmanager.Config, problems ...string) {
			err := cfg.Validate()
			Expect(err).To(HaveOccurred())
			for _, p := range problems {
				Expect(err.Error()).To(ContainSubstring(p))
			}
			_, err = credmanager.New(e.logger, cfg)
			Expect(err).To(HaveOccurred())
		},
		Entry("unknown key type", credmanager.Config{DataDir: "/x", KeyType: "ed25519"}, `unknown key_type "ed25519"`),
		Entry("several", credmanager.Config{DataDir: "rel", CACertFile: "/ca.crt", KeyType: "rsa-1024", Validity: time.Second},
			"not an absolute path", "must be set together", `unknown key_type "rsa-1024"`, "shorter than"),
		Entry("no data dir", credmanager.Config{}, "data_dir is empty"),
	)

	It("accepts every listed key type", func() {
		for _, kt := range credmanager.KeyTypes {
			Expect(credmanager.ValidateKeyType(kt)).To(Succeed())
		}
		Expect(credmanager.KeyTypes[0]).To(Equal(credmanager.DefaultKeyType))
		Expect(credmanager.ValidateKeyType("")).NotTo(Succeed())
	})
})
