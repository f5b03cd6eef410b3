package main

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the CLI talks HTTP to the agent; it must not link containerd (it still links the store and nats-server through routeemitter: issue 15).
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "cmd/cellctl", ForbiddenDeps: []string{"github.com/containerd/"}})
}
