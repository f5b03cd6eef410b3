package runtime_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/cellagent/cellagent/containerstore/runtime"
)

// tree writes files (path -> content; content "" makes a directory) under
// a new root, as the kernel would show a cgroup file system.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		path := filepath.Join(root, p)
		if content == "" {
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// v1 is a cgroup v1 host: one hierarchy per controller, cpu and cpuacct
// mounted together and linked under both names (as systemd does).
func v1(t *testing.T) string {
	root := tree(t, map[string]string{
		"memory/ns/g1/memory.usage_in_bytes": "12582912\n",
		"memory/ns/g2/memory.usage_in_bytes": "4096\n",
		"cpu,cpuacct/ns/g1/cpuacct.usage":    "2500000000\n",
		"pids/ns/g1":                         "",
		"pids/other/g3":                      "",
		"blkio/ns":                           "",
		"unified/cgroup.controllers":         "memory pids\n", // hybrid: v2 mounted beside
	})
	for _, name := range []string{"cpu", "cpuacct"} {
		if err := os.Symlink("cpu,cpuacct", filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// v2 is a unified-hierarchy host.
func v2(t *testing.T) string {
	return tree(t, map[string]string{
		"cgroup.controllers":      "cpuset cpu io memory pids\n",
		"ns/g1/memory.current":    "12582912\n",
		"ns/g1/cpu.stat":          "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
		"ns/g2/memory.current":    "4096\n",
		"ns/g2/cpu.stat":          "user_usec 1\n",
		"other/g3/memory.current": "1\n",
		"system.slice":            "",
	})
}

func TestCgroupsReadsBothHierarchies(t *testing.T) {
	for name, layout := range map[string]struct {
		root    string
		unified bool
	}{"v1": {v1(t), false}, "v2": {v2(t), true}} {
		t.Run(name, func(t *testing.T) {
			g := runtime.NewCgroups(layout.root, "ns")
			if g.Unified() != layout.unified {
				t.Fatalf("Unified() = %v, want %v", g.Unified(), layout.unified)
			}
			if n, err := g.MemoryBytes("g1"); err != nil || n != 12<<20 {
				t.Errorf("MemoryBytes(g1) = %d, %v; want %d", n, err, 12<<20)
			}
			if n, err := g.MemoryBytes("g2"); err != nil || n != 4096 {
				t.Errorf("MemoryBytes(g2) = %d, %v; want 4096", n, err)
			}
			if d, err := g.CPUTime("g1"); err != nil || d != 2500*time.Millisecond {
				t.Errorf("CPUTime(g1) = %v, %v; want 2.5s", d, err)
			}
			if _, err := g.MemoryBytes("gone"); err == nil {
				t.Error("MemoryBytes of a container without a cgroup answered no error")
			}
			if _, err := g.CPUTime("g2"); err == nil {
				t.Error("CPUTime without a usage figure answered no error")
			}
			if got, want := g.IDs(), map[string]bool{"g1": true, "g2": true}; !reflect.DeepEqual(got, want) {
				t.Errorf("IDs() = %v, want %v", got, want)
			}
			for _, bad := range []string{"", ".", "..", "../other", "a/b"} {
				if _, err := g.MemoryBytes(bad); err == nil {
					t.Errorf("MemoryBytes(%q) answered no error", bad)
				}
				if err := g.Remove(bad); err == nil {
					t.Errorf("Remove(%q) answered no error", bad)
				}
			}
		})
	}
}

func TestCgroupsRemoveOnlyThatContainersCgroups(t *testing.T) {
	t.Run("v1", func(t *testing.T) {
		root := v1(t)
		g := runtime.NewCgroups(root, "ns")
		// The files stand for the kernel's control files, which rmdir
		// takes along; a plain directory needs them gone.
		for _, f := range []string{"memory/ns/g1/memory.usage_in_bytes", "cpu,cpuacct/ns/g1/cpuacct.usage"} {
			if err := os.Remove(filepath.Join(root, f)); err != nil {
				t.Fatal(err)
			}
		}
		if err := g.Remove("g1"); err != nil {
			t.Fatalf("Remove(g1): %v", err)
		}
		exists(t, root, map[string]bool{"memory/ns/g1": false, "cpu,cpuacct/ns/g1": false, "pids/ns/g1": false,
			"memory/ns/g2": true, "pids/other/g3": true, "blkio/ns": true})
		if err := g.Remove("g1"); err != nil {
			t.Errorf("Remove of a cgroup already gone: %v", err)
		}
		// One that cannot go (here: not empty; on cgroupfs: processes
		// in it) is reported.
		if err := g.Remove("g2"); err == nil {
			t.Error("Remove of a cgroup that cannot be removed answered no error")
		}
	})
	t.Run("v2", func(t *testing.T) {
		root := v2(t)
		g := runtime.NewCgroups(root, "ns")
		for _, f := range []string{"ns/g1/memory.current", "ns/g1/cpu.stat"} {
			if err := os.Remove(filepath.Join(root, f)); err != nil {
				t.Fatal(err)
			}
		}
		if err := g.Remove("g1"); err != nil {
			t.Fatalf("Remove(g1): %v", err)
		}
		exists(t, root, map[string]bool{"ns/g1": false, "ns/g2": true, "other/g3": true, "system.slice": true})
		if err := g.Remove("g2"); err == nil {
			t.Error("Remove of a cgroup that cannot be removed answered no error")
		}
	})
	t.Run("no cgroup file system", func(t *testing.T) {
		g := runtime.NewCgroups(filepath.Join(t.TempDir(), "missing"), "ns")
		if err := g.Remove("g1"); err != nil {
			t.Errorf("Remove: %v", err)
		}
		if ids := g.IDs(); len(ids) != 0 {
			t.Errorf("IDs() = %v, want none", ids)
		}
	})
}

func exists(t *testing.T, root string, want map[string]bool) {
	t.Helper()
	for d, w := range want {
		_, err := os.Stat(filepath.Join(root, d))
		if got := err == nil; got != w {
			t.Errorf("%s exists = %v, want %v", d, got, w)
		}
	}
}

// BenchmarkCgroupsMemoryBytes is the per-container cost of a scrape's
// memory figure (compare with containerd's task Metrics call).
func BenchmarkCgroupsMemoryBytes(b *testing.B) {
	root := b.TempDir()
	dir := filepath.Join(root, "memory", "ns", "g1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.usage_in_bytes"), []byte("12582912\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	g := runtime.NewCgroups(root, "ns")
	for b.Loop() {
		if _, err := g.MemoryBytes("g1"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestProcsListsTheContainersProcessesOnEitherHierarchy(t *testing.T) {
	for name, root := range map[string]string{
		"v1": tree(t, map[string]string{"memory/ns/g1/cgroup.procs": "10\n11\n"}),
		"v2": tree(t, map[string]string{"cgroup.controllers": "memory\n", "ns/g1/cgroup.procs": "10\n11\n"}),
	} {
		got, err := runtime.NewCgroups(root, "ns").Procs("g1")
		if err != nil || !reflect.DeepEqual(got, []uint32{10, 11}) {
			t.Errorf("%s: Procs = %v, %v", name, got, err)
		}
		if _, err := runtime.NewCgroups(root, "ns").Procs("../g1"); err == nil {
			t.Errorf("%s: a path as id was read", name)
		}
	}
}
