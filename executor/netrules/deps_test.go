package netrules_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: a leaf over the public model, standard library only.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "executor/netrules", Project: []string{"executor"}, StdlibOnly: true})
}
