package config_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: configuration is data over the public model (and the
// network's own settings types); it knows nothing of the store, the
// runtime or the agent's wiring.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "config", Forbidden: []string{"containerstore", "containerstore/runtime/...",
		"credmanager/...", "proxyhook/...", "routeemitter/...", "metrics", "executor/httpapi", "cmd/..."}})
}
