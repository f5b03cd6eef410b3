package credmanager_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: a lower package: it knows nothing of the store (its
// adapter is in internal/adapters), no sibling and nothing above.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "credmanager", Forbidden: []string{"containerstore", "containerstore/runtime/...", "containerstore/network/...", "internal/adapters", "proxyhook/...", "proxy/...", "routeemitter/...", "executor/httpapi", "config", "metrics", "cmd/..."}, ForbiddenDeps: []string{depcheck.Module + "/containerstore"}})
}
