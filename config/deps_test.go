package config_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: configuration is data over the public model (egress
// rules are checked by executor/netrules); it knows nothing of the store,
// the network, the runtime or the agent's wiring.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "config", Forbidden: []string{"containerstore/...",
		"credmanager/...", "proxyhook/...", "routeemitter/...", "metrics", "executor/httpapi", "cmd/..."}})
}
