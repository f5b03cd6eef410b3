package natsauth_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: a leaf the CLI links: the standard library and the atomic writer.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "routeemitter/natsauth", Project: []string{"internal/atomicfile"}, StdlibOnly: true})
}
