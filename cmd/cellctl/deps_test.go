package main

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the CLI talks HTTP to the agent and watches routes as a
// NATS client: it must link neither containerd, nor the store, nor the
// embedded NATS server, nor the emitter (issue 15).
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "cmd/cellctl", Forbidden: []string{"routeemitter", "routeemitter/embeddednats"}, ForbiddenDeps: []string{
		"github.com/containerd/",
		depcheck.Module + "/containerstore",
		"github.com/nats-io/nats-server/",
	}})
}
