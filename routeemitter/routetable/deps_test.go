package routetable_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: what `cellctl routes` links: Gorouter's messages and a
// NATS client, nothing of the project and no NATS server.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "routeemitter/routetable", Project: []string{}, ForbiddenDeps: []string{"github.com/nats-io/nats-server/", "github.com/containerd/"}})
}
