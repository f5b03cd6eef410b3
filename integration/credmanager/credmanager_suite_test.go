// Package credmanager_test checks what only root can: that instance.key
// really is readable by the container's uid and by nobody else. Run with
// CELLAGENT_INTEGRATION=1 as root.
package credmanager_test

import (
	"os"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestCredmanagerIntegration(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Credmanager Integration Suite")
}

var _ = BeforeEach(func() {
	if os.Getenv("CELLAGENT_INTEGRATION") != "1" {
		Skip("set CELLAGENT_INTEGRATION=1 to run integration tests")
	}
	if os.Geteuid() != 0 {
		Skip("needs root: chown to another uid and running readers as other uids")
	}
})
