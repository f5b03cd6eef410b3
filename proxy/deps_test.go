package proxy_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: cellproxy's core runs in every container: it links nothing of the agent.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "proxy", Project: []string{}, ForbiddenDeps: []string{"github.com/containerd/", "github.com/nats-io/", "github.com/envoyproxy/"}})
}
