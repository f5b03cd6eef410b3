package routeintegrity_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/integration/testagent"
)

func TestRouteIntegrity(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Route integrity suite (real containerd + CNI + cellproxy + NATS)")
}

var _ = BeforeSuite(func() {
	if !testagent.Enabled() {
		Skip("integration tests need root and CELLAGENT_INTEGRATION=1 (run scripts/test)")
	}
	_, err := testagent.BinDir()
	Expect(err).NotTo(HaveOccurred())
})
