package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/executor"
)

func fileID(t *testing.T, path string) (uint64, uint64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Dev, st.Ino
}

// Issue 13 item 4: runc resolves a bind mount's source again after the
// allowlist check; a component swapped for a symlink in between was
// mounted. The created container is checked before its process starts.
func TestVerifyBindMountsRefusesADirectoryOtherThanTheCheckedOne(t *testing.T) {
	checked := t.TempDir()
	root := t.TempDir() // the container's root as the host sees it
	// What runc mounted at /data after the swap: another directory.
	if err := os.Mkdir(filepath.Join(root, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	dev, ino := fileID(t, checked)
	labels := map[string]string{}
	bindCheckLabels([]containerstore.Mount{{Source: checked, Destination: "/data", Dev: dev, Ino: ino}, {Source: "/x", Destination: "/etc/y"}}, labels)
	if len(labels) != 1 {
		t.Fatalf("labels %v: want one, for the checked mount only", labels)
	}
	err := verifyBindMounts(root, labels)
	if !errors.Is(err, executor.ErrInvalidRequest) {
		t.Fatalf("a mount of another directory: got %v, want InvalidRequest", err)
	}
}

func TestVerifyBindMountsAcceptsTheCheckedDirectory(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	dev, ino := fileID(t, data)
	labels := map[string]string{}
	bindCheckLabels([]containerstore.Mount{{Source: "/host/dir", Destination: "/data", Dev: dev, Ino: ino}}, labels)
	if err := verifyBindMounts(root, labels); err != nil {
		t.Fatalf("the checked directory: %v", err)
	}
}
