package runtime

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRemoveCgroupsRemovesOnlyThatContainersCgroups(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"cpu/ns/g1", "memory/ns/g1", "memory/ns/g2", "pids/other/g1", "blkio/ns"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeCgroups(root, "ns", "g1"); err != nil {
		t.Fatalf("removeCgroups: %v", err)
	}
	for d, want := range map[string]bool{"cpu/ns/g1": false, "memory/ns/g1": false, "memory/ns/g2": true, "pids/other/g1": true, "blkio/ns": true} {
		_, err := os.Stat(filepath.Join(root, d))
		if got := err == nil; got != want {
			t.Errorf("%s exists = %v, want %v", d, got, want)
		}
	}
	// A cgroup that cannot go (here: not empty; on cgroupfs: processes in
	// it) is reported.
	if err := os.MkdirAll(filepath.Join(root, "cpu/ns/g2/child"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := removeCgroups(root, "ns", "g2"); err == nil {
		t.Error("removeCgroups of a cgroup that cannot be removed answered no error")
	}
	if err := removeCgroups(filepath.Join(root, "missing"), "ns", "g1"); err != nil {
		t.Errorf("no cgroup file system: %v", err)
	}
}
