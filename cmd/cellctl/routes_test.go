package main

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/routeemitter/natsauth"
)

var _ = Describe("cellctl routes' NATS credential", func() {
	It("reads the embedded server's user and password from the data dir when the URL has none", func() {
		dir := GinkgoT().TempDir()
		Expect(natsAuth("nats://127.0.0.1:4222", dir)).To(BeEmpty(), "no file yet")
		_, err := natsauth.EnsureEmbeddedAuth(dir, natsauth.EmbeddedAuth{User: "u", Password: "p"})
		Expect(err).NotTo(HaveOccurred())
		Expect(natsAuth("nats://127.0.0.1:4222", dir)).To(HaveLen(1))
		Expect(natsAuth("nats://other:pw@127.0.0.1:4222", dir)).To(BeEmpty(), "the URL's own user wins")
	})

	It("does not print a password in an error", func() {
		Expect(redactURL("nats://u:secret@127.0.0.1:4222")).NotTo(ContainSubstring("secret"))
	})
})
