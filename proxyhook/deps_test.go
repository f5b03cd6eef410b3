package proxyhook_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the proxy step uses credmanager and proxyconfig, runs processes through the store's ProcessRunner, tells the store what happened only by containerstore notices (Config.Notices; containerstore's TestNoCallsBackUp), and knows no other adapter.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "proxyhook", Forbidden: []string{"containerstore/runtime/...", "containerstore/network/...", "routeemitter/...", "proxy/...", "executor/httpapi", "config", "metrics", "cmd/..."}})
}
