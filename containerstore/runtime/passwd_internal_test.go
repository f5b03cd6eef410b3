package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellagent/cellagent/containerstore"
)

// rootfsWith makes a rootfs whose etc/passwd is made by mk.
func rootfsWith(t *testing.T, mk func(passwd string)) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	mk(filepath.Join(root, "etc", "passwd"))
	return root
}

// lookupWithin runs userInRootfs and fails the test if it has not answered
// in 30s (before the fix a FIFO blocked it for ever).
func lookupWithin(t *testing.T, root, user string) (containerstore.User, error) {
	t.Helper()
	type res struct {
		u   containerstore.User
		err error
	}
	ch := make(chan res, 1)
	go func() { u, err := userInRootfs(root, user); ch <- res{u, err} }()
	select {
	case r := <-ch:
		return r.u, r.err
	case <-time.After(30 * time.Second):
		t.Fatal("the user look-up never returned")
		return containerstore.User{}, nil
	}
}

func TestUserInRootfsReadsTheImagesPasswd(t *testing.T) {
	root := rootfsWith(t, func(p string) {
		_ = os.WriteFile(p, []byte("root:x:0:0::/root:/bin/sh\nvcap:x:2000:2000::/home/vcap:/bin/sh\n"), 0o644)
	})
	u, err := lookupWithin(t, root, "vcap")
	if err != nil || u != (containerstore.User{UID: 2000, GID: 2000}) {
		t.Fatalf("vcap: got %+v, %v", u, err)
	}
}

// Issue 13 item 3: an absolute symlink resolved to the host's file.
func TestUserInRootfsResolvesAnAbsoluteSymlinkInsideTheRootfs(t *testing.T) {
	host := filepath.Join(t.TempDir(), "host-passwd")
	if err := os.WriteFile(host, []byte("vcap:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := rootfsWith(t, func(p string) { _ = os.Symlink(host, p) })
	u, err := lookupWithin(t, root, "vcap")
	if err == nil {
		t.Fatalf("vcap resolved to %+v through a symlink to the host's %s", u, host)
	}
	if !strings.Contains(err.Error(), `user "vcap" does not exist`) {
		t.Fatalf("got %v, want the user missing (the link points nowhere inside the rootfs)", err)
	}

	// The same link with its target inside the rootfs works: images do that.
	inside := rootfsWith(t, func(p string) { _ = os.Symlink("/usr/lib/passwd", p) })
	_ = os.MkdirAll(filepath.Join(inside, "usr", "lib"), 0o755)
	_ = os.WriteFile(filepath.Join(inside, "usr", "lib", "passwd"), []byte("vcap:x:2000:2000::/:/bin/sh\n"), 0o644)
	if u, err := lookupWithin(t, inside, "vcap"); err != nil || u.UID != 2000 {
		t.Fatalf("absolute link inside the rootfs: got %+v, %v", u, err)
	}
}

func TestUserInRootfsRefusesAFIFOWithoutBlocking(t *testing.T) {
	root := rootfsWith(t, func(p string) {
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	_, err := lookupWithin(t, root, "vcap")
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("got %v, want not a regular file", err)
	}
}

func TestUserInRootfsRefusesAHugePasswd(t *testing.T) {
	root := rootfsWith(t, func(p string) {
		_ = os.WriteFile(p, []byte(strings.Repeat("x", maxPasswdBytes+1)), 0o644)
	})
	_, err := lookupWithin(t, root, "vcap")
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("got %v, want too large", err)
	}
}

func TestUserInRootfsWithoutPasswdTakesNumericUsersOnly(t *testing.T) {
	root := t.TempDir()
	if u, err := lookupWithin(t, root, "1234"); err != nil || u.UID != 1234 {
		t.Fatalf("1234: got %+v, %v", u, err)
	}
	if _, err := lookupWithin(t, root, "vcap"); err == nil {
		t.Fatal("vcap without a passwd resolved")
	}
}
