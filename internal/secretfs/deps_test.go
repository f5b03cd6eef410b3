package secretfs_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: a leaf over system calls.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "internal/secretfs", Project: []string{}})
}
