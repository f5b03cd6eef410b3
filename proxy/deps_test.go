package proxy_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: cellproxy's core runs in every container: it links nothing of the agent, only the project's leaf helper for backoff.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "proxy", Project: []string{"internal/backoff"}, ForbiddenDeps: []string{"github.com/containerd/", "github.com/nats-io/", "github.com/envoyproxy/"}})
}
