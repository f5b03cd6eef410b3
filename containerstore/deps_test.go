package containerstore_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the store is above its adapters: it knows them only by its own interfaces.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "containerstore", Project: []string{"executor", "logfile", "internal/backoff", "internal/atomicfile", "internal/cellinit"}})
}
