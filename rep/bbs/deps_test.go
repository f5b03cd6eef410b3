package bbs_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: a BBS client: Diego's models over mutual TLS.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "rep/bbs", Project: []string{"rep/models", "rep/mtls"}})
}
