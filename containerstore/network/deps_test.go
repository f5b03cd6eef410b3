package network_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: a lower package: it knows no sibling adapter and nothing above the store.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "containerstore/network", Forbidden: []string{"containerstore/runtime/...", "credmanager/...", "proxyhook/...", "proxy/...", "routeemitter/...", "executor/httpapi", "config", "metrics", "cmd/..."}})
}
