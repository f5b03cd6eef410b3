package api_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the rep API speaks Diego's models only.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "rep/api", Project: []string{"rep/models"}})
}
