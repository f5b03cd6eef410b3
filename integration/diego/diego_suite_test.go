package diego_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/integration/testagent"
)

func TestDiego(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Diego cell suite (real Locket, BBS, auctioneer; real containers)")
}

var _ = BeforeSuite(func() {
	if !testagent.Enabled() {
		Skip("integration tests need root and CELLAGENT_INTEGRATION=1 (run scripts/test)")
	}
	_, err := testagent.BinDir()
	Expect(err).NotTo(HaveOccurred())
})
