package routeemitter_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: a lower package: it knows no sibling adapter and nothing above the store.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "routeemitter", Forbidden: []string{"routeemitter/embeddednats", "containerstore/runtime/...", "containerstore/network/...", "credmanager/...", "proxyhook/...", "proxy/...", "executor/httpapi", "config", "metrics", "cmd/..."}, ForbiddenDeps: []string{"github.com/containerd/", "github.com/nats-io/nats-server/"}})
}
