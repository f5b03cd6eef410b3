package proxyconfig_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: a leaf but for the atomic-write helper; the agent links it, so Envoy's API types (and protobuf) stay in its tests (envoyvalidate).
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "proxyconfig", Project: []string{"internal/atomicfile"}, ForbiddenDeps: []string{"github.com/envoyproxy/", "google.golang.org/protobuf"}})
}
