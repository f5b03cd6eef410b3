package hardening_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/integration/testagent"
)

// Issue 13: what a tenant, a web page or a hostile image could do to the
// cell, against a real agent, containerd and runc.
func TestHardening(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Issue 13 hardening suite")
}

var _ = BeforeSuite(func() {
	if !testagent.Enabled() {
		Skip("integration tests need root and CELLAGENT_INTEGRATION=1 (run scripts/test)")
	}
	_, err := testagent.BinDir()
	Expect(err).NotTo(HaveOccurred())
})
