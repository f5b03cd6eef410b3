package runtime

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/internal/cellinit"
)

// Issue 16: with an init the process is the init, as root (it drops its
// children itself); the app's argv,
// user, file limit and HOME rule move to the init's command line.
func TestWithInitRunsTheInitAsRootAndHandsItTheApp(t *testing.T) {
	s := specWithCaps()
	s.Process.Args = []string{"/app/server", "8080"}
	s.Process.User = specs.User{UID: 2000, GID: 2000}
	s.Process.Env = []string{"PATH=/bin", "PORT=8080"}
	s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}}
	in := containerstore.ProcessInit{Path: "/etc/cf-assets/cellinit", Config: cellinit.Config{
		Proxy: []string{"/etc/cf-assets/envoy"}, ProxyUser: &cellinit.Cred{UID: 2001, GID: 2001}, ProxyNoFile: 65536, ProxyDropCaps: true, MaxRestarts: 5}}
	if err := withInit(in)(context.Background(), nil, nil, s); err != nil {
		t.Fatal(err)
	}
	p := s.Process
	if p.User.UID != 0 || p.User.GID != 0 {
		t.Fatalf("init runs as %d:%d: want root", p.User.UID, p.User.GID)
	}
	if p.Args[0] != in.Path {
		t.Fatalf("process %q: want the init", p.Args)
	}
	got, err := cellinit.Parse(p.Args[1:])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.App, []string{"/app/server", "8080"}) || *got.AppUser != (cellinit.Cred{UID: 2000, GID: 2000}) ||
		got.AppNoFile != (cellinit.Limit{Soft: 1024, Hard: 1024}) || !got.AppHome || got.ProxyNoFile != 65536 || !got.ProxyDropCaps {
		t.Fatalf("init config %+v", got)
	}
	if p.Rlimits[0].Hard != 65536 {
		t.Fatalf("init file limit %+v: want the proxy's (the init lowers the app's)", p.Rlimits)
	}
	s.Process.Env = append(s.Process.Env, "HOME=/app")
	s.Process.Args = []string{"/app/server"}
	s.Process.User = specs.User{UID: 2000, GID: 2000}
	_ = withInit(in)(context.Background(), nil, nil, s)
	if got, _ := cellinit.Parse(s.Process.Args[1:]); got.AppHome {
		t.Fatal("an explicit HOME was overridden by the passwd rule")
	}
}

// Issue 16: for a non-root app the init gets no more than it keeps once
// the app runs (the DAC capabilities the Go init looked the app up with
// are gone: the C init looks it up as the app's user); a root app keeps
// the container's set.
func TestWithInitGivesTheInitOnlyWhatItKeepsUnlessTheAppIsRoot(t *testing.T) {
	in := containerstore.ProcessInit{Path: "/etc/cf-assets/cellinit", Config: cellinit.Config{Proxy: []string{"/etc/cf-assets/envoy"}}}
	for _, tc := range []struct {
		uid  uint32
		want []string
	}{{2000, []string{"CAP_SETUID"}}, {0, []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_SETUID"}}} {
		s := specWithCaps()
		s.Process.Args = []string{"/app/server"}
		s.Process.User = specs.User{UID: tc.uid, GID: tc.uid}
		if err := withInit(in)(context.Background(), nil, nil, s); err != nil {
			t.Fatal(err)
		}
		c := s.Process.Capabilities
		for name, set := range map[string][]string{"bounding": c.Bounding, "permitted": c.Permitted, "effective": c.Effective} {
			if !slices.Equal(set, tc.want) {
				t.Errorf("app uid %d: the init's %s set %v, want %v", tc.uid, name, set, tc.want)
			}
		}
		if tc.uid != 0 && len(c.Inheritable)+len(c.Ambient) != 0 {
			t.Errorf("app uid %d: the init keeps inheritable %v, ambient %v", tc.uid, c.Inheritable, c.Ambient)
		}
	}
}

// Issue 16: with AppEnvHostPath the init runs with runc's default PATH
// alone and the app's environment goes to it in that file (0600, each
// entry NUL-terminated): the C library's start-up code of the root init
// never reads the app's variables.
func TestWithInitHandsTheAppsEnvironmentOverInAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "app.env")
	s := specWithCaps()
	s.Process.Args = []string{"/app/server"}
	s.Process.User = specs.User{UID: 2000, GID: 2000}
	s.Process.Env = []string{"PATH=/bin", "GLIBC_TUNABLES=glibc.malloc.check=3", "SECRET=x y"}
	in := containerstore.ProcessInit{Path: "/etc/cf-assets/cellinit", AppEnvHostPath: file,
		Config: cellinit.Config{Proxy: []string{"/etc/cf-assets/envoy"}, AppEnv: "/etc/cf-assets/cellinit-run/app.env"}}
	if err := withInit(in)(context.Background(), nil, nil, s); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Process.Env, []string{initPath}) {
		t.Fatalf("init environment %q: want runc's PATH alone", s.Process.Env)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "PATH=/bin\x00GLIBC_TUNABLES=glibc.malloc.check=3\x00SECRET=x y\x00" {
		t.Fatalf("env file %q", b)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Fatalf("env file mode %v, want 0600", st.Mode())
	}
	if got, _ := cellinit.Parse(s.Process.Args[1:]); got.AppEnv != in.Config.AppEnv || !got.AppHome {
		t.Fatalf("init config %+v: want the file named and HOME by the app's environment", got)
	}
}
