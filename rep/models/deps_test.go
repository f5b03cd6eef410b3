package models_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: Diego's wire types: protobuf, nothing of the project.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "rep/models", Project: []string{}})
}
