package main_test

import (
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: cellproxy runs in every container (~RSS per instance): the proxy alone.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "cmd/cellproxy", Project: []string{"proxy"}, ForbiddenDeps: []string{"github.com/containerd/", "github.com/nats-io/", "github.com/envoyproxy/", "github.com/cellagent/cellagent/containerstore"}})
}
