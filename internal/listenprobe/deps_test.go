package listenprobe_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: a leaf but for the thread helper.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "internal/listenprobe", Project: []string{"internal/netnsthread"}})
}
