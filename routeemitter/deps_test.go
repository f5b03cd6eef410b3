package routeemitter_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: a lower package: it knows nothing of the store (its
// adapter is in internal/adapters), no sibling and nothing above.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "routeemitter", Forbidden: []string{"routeemitter/embeddednats", "containerstore", "containerstore/runtime/...", "containerstore/network/...", "internal/adapters", "credmanager/...", "proxyhook/...", "proxy/...", "executor/httpapi", "config", "metrics", "cmd/..."}, ForbiddenDeps: []string{"github.com/containerd/", "github.com/nats-io/nats-server/", depcheck.Module + "/containerstore"}})
}
