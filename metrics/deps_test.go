package metrics_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: metrics read the store through its event stream and a few funcs.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "metrics", Project: []string{"executor"}})
}
