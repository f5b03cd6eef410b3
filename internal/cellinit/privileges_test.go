package cellinit_test

import (
	"bufio"
	"fmt"
	"os"
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
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	s.wait(t)
}

func syscallSleep() { _ = syscall.Nanosleep(&syscall.Timespec{Nsec: 50e6}, nil) }
