package cellinit_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the init is linked into a binary of its own that runs in
// every container: it takes the two leaves it needs and nothing of the agent.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "internal/cellinit", Project: []string{"internal/atomicfile", "logfile"}})
}
