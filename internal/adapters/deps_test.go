package adapters_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the adapters bind the lower packages to the store's
// interfaces; they are bound in turn by cmd/cellagent only, and know
// neither the runtime, nor the proxy, nor the API, config or metrics.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "internal/adapters", Project: []string{
		"containerstore", "containerstore/network", "credmanager", "downloads", "executor", "routeemitter", "routeemitter/routetable"}})
}
