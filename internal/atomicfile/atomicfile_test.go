package atomicfile_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cellagent/cellagent/internal/atomicfile"
)

func TestWriteFileReplacesWithEveryDurability(t *testing.T) {
	for _, d := range []atomicfile.Durability{atomicfile.NoSync, atomicfile.SyncFile, atomicfile.SyncFileAndDir} {
		t.Run(d.String(), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "r.json")
			if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := atomicfile.WriteFile(path, []byte("new"), 0o600, d); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil || string(b) != "new" {
				t.Errorf("content = %q, %v; want new", b, err)
			}
			st, _ := os.Stat(path)
			if st.Mode().Perm() != 0o600 {
				t.Errorf("mode = %v, want 0600", st.Mode().Perm())
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want the file alone", len(entries))
			}
		})
	}
}

func TestWriteFileFailsWithoutLeavingATempFileOrTouchingTheOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The rename fails: the target is a non-empty directory.
	target := filepath.Join(dir, "sub")
	if err := os.MkdirAll(filepath.Join(target, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteFile(target, []byte("new"), 0o600, atomicfile.SyncFileAndDir); err == nil {
		t.Fatal("a rename over a directory answered no error")
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "missing", "r.json"), nil, 0o600, atomicfile.NoSync); err == nil {
		t.Fatal("a write into a missing directory answered no error")
	}
	if err := atomicfile.WriteFile(path, nil, 0o600, atomicfile.Durability(9)); err == nil {
		t.Fatal("an unknown durability answered no error")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if atomicfile.IsTemp(e.Name()) {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("the old file became %q", b)
	}
}

func TestIsTemp(t *testing.T) {
	for name, want := range map[string]bool{
		".r.json.tmp-123": true, "dir/.g1.json.tmp-9": true,
		"r.json": false, "r.json.tmp": false, ".hidden": false, "r.tmp-1": false,
	} {
		if got := atomicfile.IsTemp(name); got != want {
			t.Errorf("IsTemp(%q) = %v, want %v", name, got, want)
		}
	}
}

// BenchmarkWriteFile is the cost of each durability for a record-sized
// file on the test's file system.
func BenchmarkWriteFile(b *testing.B) {
	data := make([]byte, 1500)
	for _, d := range []atomicfile.Durability{atomicfile.NoSync, atomicfile.SyncFile, atomicfile.SyncFileAndDir} {
		b.Run(d.String(), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "r.json")
			for b.Loop() {
				if err := atomicfile.WriteFile(path, data, 0o600, d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
