package executor_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the public model imports nothing but the standard library.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "executor", Project: []string{}, StdlibOnly: true})
}
