package downloads_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: a lower package: it knows the public model only, not
// the store (its adapter is in internal/adapters) nor anything above.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "downloads", Forbidden: []string{"containerstore/...", "internal/adapters", "proxyhook/...", "proxy/...", "routeemitter/...", "credmanager/...", "rep/...", "executor/httpapi", "config", "metrics", "cmd/..."}, ForbiddenDeps: []string{depcheck.Module + "/containerstore"}})
}
