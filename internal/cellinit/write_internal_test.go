package cellinit

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// A state write that failed is written again at the next health round,
// even when its answer is the same, and a retry is armed for a proxy
// state change where no rounds run.
func TestAFailedStateWriteIsRetried(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state") // not there yet: writes fail
	s := &supervisor{cfg: Config{StateDir: dir}, stderr: io.Discard}
	s.healthRound("tcp check refused")
	if !s.dirty || s.retry == nil {
		t.Fatalf("failed write: dirty %v, retry armed %v", s.dirty, s.retry != nil)
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	s.healthRound("tcp check refused")
	st, err := ReadState(dir)
	if err != nil || st.Unhealthy != "tcp check refused" {
		t.Fatalf("state after the next round with the same answer: %+v, %v", st, err)
	}
	if s.dirty {
		t.Fatal("still dirty after a write that succeeded")
	}
}
