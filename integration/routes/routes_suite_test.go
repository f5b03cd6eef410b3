package routes_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/integration/testagent"
)

func TestRoutes(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Route registration suite (real NATS, real containers)")
}

var _ = BeforeSuite(func() {
	if !testagent.Enabled() {
		Skip("integration tests need root and CELLAGENT_INTEGRATION=1 (run scripts/test)")
	}
	_, err := testagent.BinDir()
	Expect(err).NotTo(HaveOccurred())
})
