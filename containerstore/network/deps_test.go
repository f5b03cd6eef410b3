package network_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: a lower package: it knows nothing of the store (its
// adapter is in internal/adapters), no sibling and nothing above.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "containerstore/network", Forbidden: []string{"containerstore", "containerstore/runtime/...", "internal/adapters", "credmanager/...", "proxyhook/...", "proxy/...", "routeemitter/...", "executor/httpapi", "config", "metrics", "cmd/..."}})
}
