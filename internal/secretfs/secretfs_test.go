package secretfs_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/internal/secretfs"
)

// The tests mount real tmpfs instances: they need root.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
}

// dir is a fresh directory on the test's temporary filesystem, with an
// unmount of whatever Ensure put on it before the directory goes.
func dir(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(base, &st); err != nil || st.Type == unix.TMPFS_MAGIC {
		t.Skipf("the temporary directory is on a tmpfs already (%v)", err)
	}
	d := filepath.Join(base, "credentials")
	t.Cleanup(func() {
		for unix.Unmount(d, 0) == nil {
		}
	})
	return d
}

func ensure(t *testing.T, d string, size int64, want secretfs.State) {
	t.Helper()
	got, err := secretfs.Ensure(d, size)
	if err != nil {
		t.Fatalf("Ensure(%s): %v", d, err)
	}
	if got != want {
		t.Fatalf("Ensure(%s) = %s, want %s", d, got, want)
	}
}

func TestEnsureMountsAnEmptyDirectoryWithTheOptionsAndSize(t *testing.T) {
	needRoot(t)
	d := dir(t)
	ensure(t, d, 8<<20, secretfs.Mounted)

	var st unix.Statfs_t
	if err := unix.Statfs(d, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("%s: filesystem type %#x, want tmpfs", d, st.Type)
	}
	for _, f := range []struct {
		flag int64
		name string
	}{{unix.ST_NOEXEC, "noexec"}, {unix.ST_NOSUID, "nosuid"}, {unix.ST_NODEV, "nodev"}} {
		if st.Flags&f.flag == 0 {
			t.Errorf("%s mounted without %s (flags %#x)", d, f.name, st.Flags)
		}
	}
	if size := int64(st.Blocks) * st.Bsize; size != 8<<20 {
		t.Errorf("size %d bytes, want %d", size, 8<<20)
	}
	fi, err := os.Stat(d)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestEnsureTwiceStacksNoSecondMountAndKeepsTheFiles(t *testing.T) {
	needRoot(t)
	d := dir(t)
	ensure(t, d, 8<<20, secretfs.Mounted)
	if err := os.WriteFile(filepath.Join(d, "kept"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An agent restarted after kill -9, with a larger max_containers.
	ensure(t, d, 16<<20, secretfs.Remounted)
	if _, err := os.Stat(filepath.Join(d, "kept")); err != nil {
		t.Fatalf("a file written before the second Ensure: %v", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(d, &st); err != nil {
		t.Fatal(err)
	}
	if size := int64(st.Blocks) * st.Bsize; size != 16<<20 {
		t.Errorf("size %d bytes after the second Ensure, want %d", size, 16<<20)
	}
	if err := unix.Unmount(d, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Statfs(d, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		t.Fatal("two mounts stacked at the directory")
	}
}

func TestEnsureKeepsADirectoryWithEntriesOnDisk(t *testing.T) {
	needRoot(t)
	d := dir(t)
	if err := os.MkdirAll(filepath.Join(d, "guid-1"), 0o755); err != nil {
		t.Fatal(err)
	}
	ensure(t, d, 8<<20, secretfs.KeptOnDisk)
	if _, err := os.Stat(filepath.Join(d, "guid-1")); err != nil {
		t.Fatalf("the existing entry is hidden: %v", err)
	}
}

func TestEnsureLeavesADirectoryOnAnotherTmpfs(t *testing.T) {
	needRoot(t)
	base := dir(t) // unmounted at the end
	if err := os.MkdirAll(base, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", base, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	ensure(t, filepath.Join(base, "proxy"), 8<<20, secretfs.OnTmpfs)
}

func TestReleaseUnmountsOnlyAnEmptyTmpfsOfItsOwn(t *testing.T) {
	needRoot(t)
	d := dir(t)
	if got, err := secretfs.Release(d); err != nil || got != secretfs.NotMounted {
		t.Fatalf("Release of a missing directory = %s, %v", got, err)
	}
	ensure(t, d, 8<<20, secretfs.Mounted)
	if err := os.Mkdir(filepath.Join(d, "guid-1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := secretfs.Release(d); err != nil || got != secretfs.KeptMounted {
		t.Fatalf("Release with an entry = %s, %v; want %s", got, err, secretfs.KeptMounted)
	}
	if err := os.Remove(filepath.Join(d, "guid-1")); err != nil {
		t.Fatal(err)
	}
	if got, err := secretfs.Release(d); err != nil || got != secretfs.Unmounted {
		t.Fatalf("Release when empty = %s, %v; want %s", got, err, secretfs.Unmounted)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(d, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		t.Fatal("still a tmpfs after Release")
	}
	if got, err := secretfs.Release(d); err != nil || got != secretfs.NotMounted {
		t.Fatalf("Release of a plain directory = %s, %v", got, err)
	}
}
