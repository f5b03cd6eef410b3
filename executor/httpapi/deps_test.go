package httpapi_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the HTTP layer knows the store only through executor.Client.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "executor/httpapi", Project: []string{"executor"}})
}
