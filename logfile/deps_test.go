package logfile_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: a leaf: the logging binary links it alone.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "logfile", Project: []string{}})
}
