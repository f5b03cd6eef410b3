package main

import (
	"os"
	"path/filepath"
	"testing"

	"code.cloudfoundry.org/lager/v3/lagertest"
)

// The shim gets cellagent-logger when it is installed next to cellagent,
// and cellagent itself when it is not there or not executable.
func TestLoggerBinary(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "cellagent")
	small := filepath.Join(dir, "cellagent-logger")
	logger := lagertest.NewTestLogger("test")
	if got := loggerBinary(logger, self); got != self {
		t.Fatalf("without cellagent-logger: %q, want %q", got, self)
	}
	if err := os.WriteFile(small, []byte("#!/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := loggerBinary(logger, self); got != self {
		t.Fatalf("with a cellagent-logger that is not executable: %q, want %q", got, self)
	}
	if err := os.Chmod(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := loggerBinary(logger, self); got != small {
		t.Fatalf("with cellagent-logger: %q, want %q", got, small)
	}
}
