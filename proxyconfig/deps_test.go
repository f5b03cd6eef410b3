package proxyconfig_test

import (
	"os/exec"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("dependencies", func() {
	It("does not link Envoy's API types into the agent", func() {
		out, err := exec.Command("go", "list", "-deps", "github.com/cellagent/cellagent/proxyconfig").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(strings.Split(string(out), "\n")).NotTo(ContainElement(ContainSubstring("envoyproxy")))
		Expect(strings.Split(string(out), "\n")).NotTo(ContainElement(ContainSubstring("google.golang.org/protobuf")))
	})
})
