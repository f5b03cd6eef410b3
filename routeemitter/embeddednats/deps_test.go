package embeddednats_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the embedded server knows only its credential.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "routeemitter/embeddednats", Project: []string{"routeemitter/natsauth"}})
}

// TestOnlyImporterOfNATSServer keeps nats-server (about 50 packages) out of
// every binary but the agent's: nothing else in the module imports it
// (the integration suites' own test clusters aside).
func TestOnlyImporterOfNATSServer(t *testing.T) {
	depcheck.OnlyImporter(t, "github.com/nats-io/nats-server/", "routeemitter/embeddednats", "integration/...")
}
