package faults_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
)

// operatorCA writes an ECDSA P-256 CA into dir (ca.crt, ca.key with mode
// 0600) and answers the two paths and the certificate PEM.
func operatorCA(dir string) (certFile, keyFile string, certPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "faults operator CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	Expect(err).NotTo(HaveOccurred())
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	Expect(err).NotTo(HaveOccurred())
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	Expect(os.WriteFile(certFile, certPEM, 0o644)).To(Succeed())
	Expect(os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)).To(Succeed())
	return certFile, keyFile, certPEM
}

var _ = Describe("CA key unreadable at rotation time", func() {
	It("fails and retries rotations with events, without a crash, and recovers once the key is back", func() {
		certFile, keyFile, caPEM := operatorCA(GinkgoT().TempDir())
		goodKey, err := os.ReadFile(keyFile)
		Expect(err).NotTo(HaveOccurred())
		agent := startAgent("ftca", func(c *config.Config) {
			c.Identity.CACert, c.Identity.CAKey = certFile, keyFile
			c.Identity.Validity = executor.Duration(20 * time.Second)
		})
		c := runRoutable(agent, "ca-1", request("ca-1.example.com"))
		first := c.Credentials.Serial
		Expect(servedSerial(c, caPEM)).To(Equal(strings.ToLower(first)))
		events := collectEvents(agent, agent.LastSeq(ctx))

		By("the key file is replaced with garbage before the first rotation (due 10-14s after issue)")
		Expect(os.WriteFile(keyFile, []byte("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n"), 0o600)).To(Succeed())
		Eventually(func() int { return len(events.of(executor.EventCredentialsFailed, "ca-1")) }, 20*time.Second, 100*time.Millisecond).
			Should(BeNumerically(">=", 2), "failed rotations are retried, each with an event")
		failed := events.of(executor.EventCredentialsFailed, "ca-1")
		for _, ev := range failed {
			GinkgoWriter.Printf("%s %s\n", ev.Type, ev.Message)
			Expect(ev.Message).To(ContainSubstring("ca_key"))
		}
		Expect(events.of(executor.EventCredentialsRotated, "ca-1")).To(BeEmpty(), "no rotation while the key is garbage")
		Expect(agent.Exited()).NotTo(BeClosed(), "the agent did not crash")
		c, err = agent.Client.Get(ctx, "ca-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(c.State).To(Equal(executor.StateRunning))
		Expect(c.Credentials.Serial).To(Equal(first))

		By("the key is restored: the next retry rotates")
		Expect(os.WriteFile(keyFile, goodKey, 0o600)).To(Succeed())
		Eventually(func() []executor.Event { return events.of(executor.EventCredentialsRotated, "ca-1") }, 10*time.Second, 100*time.Millisecond).
			ShouldNot(BeEmpty())
		c, err = agent.Client.Get(ctx, "ca-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(c.State).To(Equal(executor.StateRunning))
		Expect(c.Credentials.Serial).NotTo(Equal(first))
		Expect(c.Credentials.Rotations).To(BeNumerically(">=", 1))
		Eventually(func() (string, error) { return servedSerial(c, caPEM) }, 10*time.Second, 200*time.Millisecond).
			ShouldNot(Equal(strings.ToLower(first)), "the proxy serves a rotated certificate signed by the operator CA")
		Eventually(func() bool { c, _ = agent.Client.Get(ctx, "ca-1"); return c.Routable }, 10*time.Second).Should(BeTrue())
		answers(c)

		expectNothingOrphaned(agent)
		deleteAllAndExpectEmpty(agent)
		tableRow("operator CA key replaced with garbage across a rotation (validity 20s)", 1,
			fmt.Sprintf("nothing: %d failed attempts with events, no crash, rotation recovered with the key back", len(failed)))
	})
})
