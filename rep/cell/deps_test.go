package cell_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the Diego cell drives the agent through executor.Client only, never the store or its adapters.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "rep/cell", Forbidden: []string{"containerstore/...", "credmanager/...", "routeemitter/...", "proxyhook/...", "internal/adapters", "config", "metrics", "cmd/..."}, ForbiddenDeps: []string{"github.com/containerd/", "github.com/nats-io/nats-server/"}})
}
