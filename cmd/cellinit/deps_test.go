package main

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the binary mounted into every proxied container is the
// init and nothing else: it links neither containerd, nor NATS, nor the
// store, nor the lager logger the agent's packages use.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "cmd/cellinit", Project: []string{"internal/cellinit"}, ForbiddenDeps: []string{
		"github.com/containerd/",
		"github.com/nats-io/",
		"code.cloudfoundry.org/lager",
		depcheck.Module + "/containerstore",
	}})
}
