package lrp_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the translation from Diego's models to the public run request; it knows nothing of the agent's inside.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "rep/lrp", Forbidden: []string{"containerstore/...", "credmanager/...", "routeemitter/...", "proxyhook/...", "internal/adapters", "config", "metrics", "cmd/..."}})
}
