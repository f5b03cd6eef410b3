package proxyhook

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The fallback poll sees a state file rewritten in place with its mtime
// unchanged (a coarse clock, the same inode): size or ctime differ.
func TestStateChangedSeesARewriteWithTheSameInodeAndMtime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy-state.json")
	if err := os.WriteFile(path, []byte(`{"seq":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1000, 0)
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	seen, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := os.Stat(path); err != nil || stateChanged(seen, again) {
		t.Fatalf("unchanged file seen as changed (err %v)", err)
	}
	if err := os.WriteFile(path, []byte(`{"seq":2,"phase":"exited"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(st, seen) || !st.ModTime().Equal(seen.ModTime()) {
		t.Fatal("setup: want the same inode and mtime")
	}
	if !stateChanged(seen, st) {
		t.Fatal("a rewrite with the same inode and mtime was not seen")
	}
}
