package proxyhook

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/proxyconfig"
)

// Issue 13 item 2: the proxy ran as uid 0 with the container's capabilities.
func TestProxySpecIsUnprivileged(t *testing.T) {
	h := &Hook{cfg: Config{DataDir: t.TempDir(), Proxy: proxyconfig.Config{},
		User: containerstore.User{UID: 61000, GID: 61000}, NoFile: DefaultNoFile}}
	spec := filesHook{h}.spec(&containerstore.Instance{GUID: "g1"})
	if spec.User != (containerstore.User{UID: 61000, GID: 61000}) {
		t.Errorf("proxy user %+v, want 61000:61000", spec.User)
	}
	if !spec.NoCapabilities {
		t.Error("the proxy keeps capabilities")
	}
	if spec.NoFile != DefaultNoFile {
		t.Errorf("proxy RLIMIT_NOFILE %d, want %d", spec.NoFile, DefaultNoFile)
	}
}

func TestProxyDirIsReadableByTheProxyGroupOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "g1")
	gid := os.Getgid()
	if err := proxyDir(dir, gid); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSetgid == 0 || fi.Mode().Perm() != 0o750 {
		t.Errorf("proxy dir mode %v, want setgid 0750", fi.Mode())
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, proxyconfig.FileMode); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, "f"))
	if int(st.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Errorf("a file in the proxy dir has gid %d, want the proxy's %d", st.Sys().(*syscall.Stat_t).Gid, gid)
	}
}

func TestNewRefusesARootProxyUser(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "cellproxy")
	_ = os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	for _, u := range []containerstore.User{{UID: 0, GID: 61000}, {UID: 61000, GID: 0}} {
		if _, err := New(nil, Config{HostBinary: bin, DataDir: t.TempDir(), User: u}, nil); err == nil {
			t.Errorf("New accepted proxy user %+v", u)
		}
	}
}

// testProxyUser is a proxy user the test process may give its files to:
// its own group unless that is root's.
func testProxyUser() containerstore.User {
	gid := uint32(os.Getgid())
	if gid == 0 {
		gid = 61000
	}
	return containerstore.User{UID: 61000, GID: gid}
}
