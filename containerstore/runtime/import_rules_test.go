package runtime_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the containerd adapter implements the store's interfaces and knows no other adapter.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "containerstore/runtime", Project: []string{"containerstore", "executor"}})
}
