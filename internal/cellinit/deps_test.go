package cellinit_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the init runs as the container's first process, a
// static binary of its own; it links the standard library, x/sys, two
// file helpers and the project's backoff (over the clock interface, which
// imports only time), never containerd or NATS.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{
		Package:       "internal/cellinit",
		Project:       []string{"internal/atomicfile", "internal/backoff", "logfile"},
		ForbiddenDeps: []string{"github.com/containerd/", "github.com/nats-io/"},
	})
}
