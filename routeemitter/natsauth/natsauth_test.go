package natsauth_test

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/routeemitter/natsauth"
)

func TestNATSAuth(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "NATSAuth Suite")
}

var _ = Describe("the embedded NATS credential", func() {
	Describe("EnsureEmbeddedAuth", func() {
		It("makes a random credential once, 0600, and keeps it", func() {
			dir := GinkgoT().TempDir()
			a, err := natsauth.EnsureEmbeddedAuth(dir, natsauth.EmbeddedAuth{})
			Expect(err).NotTo(HaveOccurred())
			Expect(a.User).NotTo(BeEmpty())
			Expect(len(a.Password)).To(BeNumerically(">=", 32))
			fi, err := os.Stat(filepath.Join(dir, natsauth.EmbeddedAuthFile))
			Expect(err).NotTo(HaveOccurred())
			Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o600)))
			again, err := natsauth.EnsureEmbeddedAuth(dir, natsauth.EmbeddedAuth{})
			Expect(err).NotTo(HaveOccurred())
			Expect(again).To(Equal(a))
			read, err := natsauth.ReadEmbeddedAuth(dir)
			Expect(err).NotTo(HaveOccurred())
			Expect(read).To(Equal(a))
		})

		It("takes the configured credential and writes it for cellctl", func() {
			dir := GinkgoT().TempDir()
			conf := natsauth.EmbeddedAuth{User: "router", Password: "from-config"}
			_, err := natsauth.EnsureEmbeddedAuth(dir, natsauth.EmbeddedAuth{})
			Expect(err).NotTo(HaveOccurred())
			Expect(natsauth.EnsureEmbeddedAuth(dir, conf)).To(Equal(conf))
			Expect(natsauth.ReadEmbeddedAuth(dir)).To(Equal(conf))
		})
	})
})
