package cellinit_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cellagent/cellagent/internal/cellinit"
)

// statusScript prints the credential lines of its own /proc status.
const statusScript = `while read -r k v; do case $k in Uid:|Gid:|Groups:|Cap*|NoNewPrivs:) echo "$k $v";; esac; done </proc/$$/status`

func statusLines(text string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), " "); ok {
			m[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return m
}

func ownStatus(t *testing.T, key string) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	return statusLines(strings.ReplaceAll(string(b), "\t", " "))[key]
}

// passwdHome is the home of uid in the host's /etc/passwd (the tests'
// "container"), "/" without one: runc's rule.
func passwdHome(uid string) string {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return "/"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p := strings.Split(sc.Text(), ":"); len(p) >= 6 && p[2] == uid {
			return p[5]
		}
	}
	return "/"
}

// As the container's root the init gives the app its user, no capability
// but the container's bounding set, and its file limit; the proxy its own
// user and no capability at all (issue 13's hardening, as runc set them).
func TestAppAndProxyRunAsTheirUsersWithTheirCapabilities(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: the init changes users")
	}
	// Writable by the proxy's user: t.TempDir's parent is root's alone.
	dir, err := os.MkdirTemp("", "cellinit-priv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	proxyOut := filepath.Join(dir, "proxy")
	s := start(t, cellinit.Config{
		App:       app(statusScript + `; echo "HOME $HOME"; echo "NoFile $(ulimit -n):$(ulimit -Hn)"; echo end; exec sleep 100`),
		AppUser:   &cellinit.Cred{UID: 65534, GID: 65534},
		AppNoFile: cellinit.Limit{Soft: 1024, Hard: 2048}, AppHome: true,
		// The first proxy exits at once: the second runs after the init
		// dropped to KeptCapabilities, and must still change its user
		// and empty its bounding set.
		Proxy: app(`if [ ! -e ` + proxyOut + `.first ]; then touch ` + proxyOut + `.first; exit 1; fi; ` +
			statusScript + ` >` + proxyOut + `.tmp; echo "NoFile $(ulimit -n):$(ulimit -Hn)" >>` + proxyOut + `.tmp; mv ` + proxyOut + `.tmp ` + proxyOut + `; exec sleep 100`),
		ProxyUser:     &cellinit.Cred{UID: 65533, GID: 65533},
		ProxyNoFile:   4096,
		ProxyDropCaps: true,
		MaxRestarts:   2,
	})
	var lines []string
	for l := range s.lines {
		if l == "end" {
			break
		}
		lines = append(lines, l)
	}
	appSt := statusLines(strings.Join(lines, "\n"))
	want := map[string]string{
		"Uid:": "65534 65534 65534 65534", "Gid:": "65534 65534 65534 65534", "Groups:": "",
		"CapInh:": "0000000000000000", "CapPrm:": "0000000000000000", "CapEff:": "0000000000000000", "CapAmb:": "0000000000000000",
		"CapBnd:": ownStatus(t, "CapBnd:"), "NoNewPrivs:": "1",
		"HOME": passwdHome("65534"), "NoFile": "1024:2048",
	}
	for k, v := range want {
		if appSt[k] != v {
			t.Errorf("app %s %q, want %q", k, appSt[k], v)
		}
	}
	var proxySt map[string]string
	for range 400 {
		if b, err := os.ReadFile(proxyOut); err == nil {
			proxySt = statusLines(string(b))
			break
		}
		syscallSleep()
	}
	want = map[string]string{
		"Uid:": "65533 65533 65533 65533", "Gid:": "65533 65533 65533 65533", "Groups:": "",
		"CapInh:": "0000000000000000", "CapPrm:": "0000000000000000", "CapEff:": "0000000000000000", "CapAmb:": "0000000000000000",
		"CapBnd:": "0000000000000000", "NoNewPrivs:": "1", "NoFile": "4096:4096",
	}
	for k, v := range want {
		if proxySt[k] != v {
			t.Errorf("proxy %s %q, want %q", k, proxySt[k], v)
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	initSt := statusLines(strings.ReplaceAll(string(b), "\t", " "))
	bnd, _ := strconv.ParseUint(ownStatus(t, "CapBnd:"), 16, 64)
	kept := fmt.Sprintf("%016x", cellinit.KeptMask()&bnd)
	want = map[string]string{"Uid:": "0 0 0 0", "CapInh:": "0000000000000000", "CapAmb:": "0000000000000000",
		"CapPrm:": kept, "CapEff:": kept, "CapBnd:": kept}
	for k, v := range want {
		if initSt[k] != v {
			t.Errorf("init %s %q, want %q", k, initSt[k], v)
		}
	}
	// Every thread, not only the main one /proc/PID/status shows (the C
	// init has one; the Go init it replaced had several, each of which
	// had to drop them).
	for tid, st := range threadStatuses(t, s.cmd.Process.Pid, 1) {
		for _, k := range []string{"CapPrm:", "CapEff:", "CapBnd:"} {
			if st[k] != kept {
				t.Errorf("init thread %s %s %q, want %q", tid, k, st[k], kept)
			}
		}
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	s.wait(t)
}

// threadStatuses answers the status lines of each of pid's threads (by
// thread id), failing the test when there are fewer than least.
func threadStatuses(t *testing.T, pid, least int) map[string]map[string]string {
	t.Helper()
	taskDir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(taskDir)
	if err != nil || len(tasks) < least {
		t.Fatalf("threads of the init: %v (%d)", err, len(tasks))
	}
	out := map[string]map[string]string{}
	for _, task := range tasks {
		b, err := os.ReadFile(taskDir + "/" + task.Name() + "/status")
		if err != nil {
			continue // ended
		}
		out[task.Name()] = statusLines(strings.ReplaceAll(string(b), "\t", " "))
	}
	return out
}

func syscallSleep() { _ = syscall.Nanosleep(&syscall.Timespec{Nsec: 50e6}, nil) }

// In a user namespace of its own the init is root with every capability
// there, whoever runs the test, and starts with inheritable and ambient
// capabilities: a proxy with ProxyDropCaps must still end with every set
// empty, bounding, inheritable and ambient included, and no_new_privs.
func TestTheProxyHoldsNoCapabilityWhateverTheInitHeld(t *testing.T) {
	sys := inUserNamespace(t, []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		[]syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}})
	dir := t.TempDir()
	proxyOut := filepath.Join(dir, "proxy")
	s := startWith(t, cellinit.Config{
		App: app(statusScript + `; echo end; exec sleep 100`),
		// The first proxy exits at once: the restart is also checked.
		Proxy: app(`if [ ! -e ` + proxyOut + `.first ]; then touch ` + proxyOut + `.first; exit 1; fi; ` +
			statusScript + ` >` + proxyOut + `.tmp; mv ` + proxyOut + `.tmp ` + proxyOut + `; exec sleep 100`),
		ProxyDropCaps: true,
		ProxyNoFile:   256,
		MaxRestarts:   2,
	}, sys)
	appSt := appStatus(s)
	heldMask := fmt.Sprintf("%016x", uint64(1)<<heldCaps[0]|uint64(1)<<heldCaps[1])
	// The app, root there without ProxyDropCaps's rule, keeps what the
	// init held, as runc would have left it.
	for k, v := range map[string]string{"CapInh:": heldMask, "CapAmb:": heldMask, "NoNewPrivs:": "1"} {
		if appSt[k] != v {
			t.Errorf("app %s %q, want %q", k, appSt[k], v)
		}
	}
	if appSt["CapBnd:"] == "0000000000000000" {
		t.Errorf("app CapBnd %q: the init's bounding set is the app's", appSt["CapBnd:"])
	}
	var proxySt map[string]string
	for range 400 {
		if b, err := os.ReadFile(proxyOut); err == nil {
			proxySt = statusLines(string(b))
			break
		}
		syscallSleep()
	}
	want := map[string]string{
		"CapInh:": "0000000000000000", "CapPrm:": "0000000000000000", "CapEff:": "0000000000000000",
		"CapAmb:": "0000000000000000", "CapBnd:": "0000000000000000", "NoNewPrivs:": "1",
	}
	for k, v := range want {
		if proxySt[k] != v {
			t.Errorf("proxy %s %q, want %q", k, proxySt[k], v)
		}
	}
	// The init itself, on every thread, kept nothing inheritable or
	// ambient (its capset empties the ambient set with the inheritable
	// one, without a call of its own).
	for tid, st := range threadStatuses(t, s.cmd.Process.Pid, 1) {
		for _, k := range []string{"CapInh:", "CapAmb:"} {
			if st[k] != "0000000000000000" {
				t.Errorf("init thread %s %s %q, want none", tid, k, st[k])
			}
		}
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	s.wait(t)
}

// A non-root app holds none of the init's capabilities, inheritable and
// ambient included, though the init started with some there. Root only
// maps the users of the namespace it needs (its root and the app's).
func TestANonRootAppHoldsNoneOfTheInitsCapabilities(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: a user namespace with more than one user")
	}
	sys := inUserNamespace(t, []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}},
		[]syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}})
	sys.GidMappingsEnableSetgroups = true
	for _, noFile := range []cellinit.Limit{{}, {Soft: 100, Hard: 4096}} {
		s := startWith(t, cellinit.Config{
			App:       app(statusScript + `; echo end; exec sleep 100`),
			AppUser:   &cellinit.Cred{UID: 65534, GID: 65534},
			AppNoFile: noFile,
		}, sys)
		appSt := appStatus(s)
		want := map[string]string{
			"Uid:": "65534 65534 65534 65534", "Gid:": "65534 65534 65534 65534", "Groups:": "",
			"CapInh:": "0000000000000000", "CapPrm:": "0000000000000000", "CapEff:": "0000000000000000",
			"CapAmb:": "0000000000000000", "NoNewPrivs:": "1",
		}
		for k, v := range want {
			if appSt[k] != v {
				t.Errorf("app (file limit %s) %s %q, want %q", noFile, k, appSt[k], v)
			}
		}
		if appSt["CapBnd:"] == "0000000000000000" {
			t.Errorf("app CapBnd %q: the init's bounding set is the app's", appSt["CapBnd:"])
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		s.wait(t)
	}
}

// heldCaps are the capabilities an init in inUserNamespace starts with
// in its inheritable and ambient sets: CAP_NET_BIND_SERVICE, CAP_SYS_ADMIN.
var heldCaps = []uintptr{10, 21}

// inUserNamespace answers the SysProcAttr of an init in a user namespace
// of its own with the given maps, holding heldCaps; the test is skipped
// where no such namespace can be made.
func inUserNamespace(t *testing.T, uids, gids []syscall.SysProcIDMap) *syscall.SysProcAttr {
	t.Helper()
	sys := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: uids, GidMappings: gids, AmbientCaps: heldCaps}
	probe := exec.Command("/bin/true")
	probe.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: uids, GidMappings: gids}
	if err := probe.Run(); err != nil {
		t.Skipf("no user namespace: %v", err)
	}
	return sys
}

// appStatus reads the app's statusScript lines up to "end".
func appStatus(s *started) map[string]string {
	var lines []string
	for l := range s.lines {
		if l == "end" {
			break
		}
		lines = append(lines, l)
	}
	return statusLines(strings.Join(lines, "\n"))
}
