package main

import (
	"testing"

	"github.com/cellagent/cellagent/containerstore/runtime"
)

// The shim passes the agent's URI query (runtime.LoggerArg names the log
// file) to this binary: the two names must agree.
func TestPathArgIsTheAgents(t *testing.T) {
	if PathArg != runtime.LoggerArg {
		t.Fatalf("PathArg %q, the agent's runtime.LoggerArg %q", PathArg, runtime.LoggerArg)
	}
}
