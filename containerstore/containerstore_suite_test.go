package containerstore_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/goleak"
)

func TestContainerstore(t *testing.T) {
	// Every goroutine the store starts (lifecycles, readiness polls, event
	// subscriptions) must end once its Runner is signalled.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), ignoreGinkgo)
	RegisterFailHandler(Fail)
	RunSpecs(t, "Containerstore Suite")
}

var ignoreGinkgo = goleak.IgnoreTopFunction("github.com/onsi/ginkgo/v2/internal/interrupt_handler.(*InterruptHandler).registerForInterrupts.func2")
