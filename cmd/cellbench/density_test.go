package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The pool file as the agent writes it: a slot counts once it is ready
// and its NotBefore (a returned slot's delay) has passed.
func TestPoolReady(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pool.json")
	if n := poolReady(path, time.Now()); n != 0 {
		t.Fatalf("no file: %d", n)
	}
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	file := `{"next": 9, "slots": [
		{"id": "pool.1", "ipv4": "10.0.0.2", "ready": true},
		{"id": "pool.2", "ready": false},
		{"id": "pool.3", "ipv4": "10.0.0.4", "ready": true, "not_before": "2026-12-03T12:00:30Z"},
		{"id": "pool.4", "ipv4": "10.0.0.5", "ready": true, "not_before": "2026-12-03T11:59:30Z"}]}`
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := poolReady(path, now); n != 2 {
		t.Fatalf("poolReady = %d, want 2 (pool.1, and pool.4 whose delay is over)", n)
	}
	if err := os.WriteFile(path, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := poolReady(path, now); n != 0 {
		t.Fatalf("a torn file: %d", n)
	}
}
