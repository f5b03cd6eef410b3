package locket_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: a Locket client: Diego's models over mutual TLS.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "rep/locket", Project: []string{"rep/models", "rep/mtls"}})
}
