package cellinit_test

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cellagent/cellagent/internal/cellinit"
)

// execAsArg as argv[1] makes cellinit the exec-as helper (its own
// children's steps, cmd/cellinit/execas.c, on a command line of their own).
const execAsArg = "exec-as"

// helpers are the ways the app is started: by the init, which forks it
// and runs the exec-as steps in the child. (There were two before the
// init was C: the init's own and the C cellinit-exec; the cases keep
// their shape for one.)
func helpers(t *testing.T) []string { return []string{""} }

func helperName(string) string { return "cellinit" }

// viaHelper is cfg with a file limit of its own for the app and a proxy
// started after it that keeps the init's.
func viaHelper(cfg cellinit.Config, _ string) cellinit.Config {
	cfg.AppNoFile = cellinit.Limit{Soft: 100, Hard: 200}
	cfg.Proxy = []string{"/bin/sleep", "100"}
	return cfg
}

// The app started by either helper has the same user, capabilities,
// file limit, HOME (runc's rule), environment and working directory. (The
// init's environment has no name twice here: os/exec keeps a name's last
// value; the next test gives the helpers duplicates.)
func TestBothExecAsHelpersStartTheSameApp(t *testing.T) {
	hs := helpers(t)
	wd := t.TempDir()
	env := []string{"PATH=/usr/bin:/bin", "DUP=first", "HOME=/nowhere", "DUP=second", "EMPTY="}
	script := `echo "NoFile $(ulimit -n):$(ulimit -Hn)"; echo "HOME $HOME"; echo "PWD $(pwd)"; env | sort | sed 's/^/ENV /'; echo end; exec sleep 100`
	cfg := cellinit.Config{AppHome: true}
	if os.Getuid() == 0 {
		script = statusScript + "; " + script
		cfg.AppUser = &cellinit.Cred{UID: 65534, GID: 65534}
	}
	cfg.App = app(script)

	for _, h := range hs {
		s := startIn(t, viaHelper(cfg, h), &syscall.SysProcAttr{}, env, wd)
		var lines []string
		for l := range s.lines {
			if l == "end" {
				break
			}
			lines = append(lines, l)
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		s.wait(t)
		out := strings.Join(lines, "\n")

		st := statusLines(out)
		uid := strings.TrimSpace(strings.Split(ownStatus(t, "Uid:"), " ")[0])
		want := map[string]string{"NoFile": "100:200", "PWD": wd, "HOME": passwdHome(uid)}
		if cfg.AppUser != nil {
			want["Uid:"], want["CapEff:"], want["NoNewPrivs:"] = "65534 65534 65534 65534", "0000000000000000", "1"
			want["HOME"] = passwdHome("65534")
		}
		for k, v := range want {
			if st[k] != v {
				t.Errorf("%s: app %s %q, want %q", helperName(h), k, st[k], v)
			}
		}
		for _, e := range []string{"ENV DUP=second", "ENV EMPTY=", "ENV HOME=" + want["HOME"]} {
			if !strings.Contains(out+"\n", e+"\n") {
				t.Errorf("%s: no %q in the app's environment:\n%s", helperName(h), e, out)
			}
		}
	}
}

// An app either helper cannot start ends the init with AppStartFailed
// and the same reason in the state file.
func TestBothExecAsHelpersReportTheSameStartErrors(t *testing.T) {
	hs := helpers(t)
	wd := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(wd, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noExec := write("not-executable", "#!/bin/sh\n", 0o644)
	garbage := write("garbage", "\x01\x02 not a program\n", 0o755)
	write("tool", "#!/bin/sh\n", 0o755)
	cases := []struct {
		argv0, path, want string
	}{
		{"cellinit-no-such-app", "/usr/bin:/bin", `exec: "cellinit-no-such-app": executable file not found in $PATH`},
		{"cellinit-no-such-app", "", `exec: "cellinit-no-such-app": executable file not found in $PATH`},
		{"/no/such/app", "/bin", `exec: "/no/such/app": stat /no/such/app: no such file or directory`},
		{wd, "/bin", `exec: "` + wd + `": is a directory`},
		{noExec, "/bin", `exec: "` + noExec + `": permission denied`},
		{garbage, "/bin", "exec " + garbage + ": exec format error"},
		{"tool", "/usr/bin:.", `exec: "tool": cannot run executable found relative to current directory`},
		{"tool", "/usr/bin:", `exec: "tool": cannot run executable found relative to current directory`},
		{"tool", "bin/..", `exec: "tool": cannot run executable found relative to current directory`},
	}
	for _, c := range cases {
		for _, h := range hs {
			dir := t.TempDir()
			cfg := viaHelper(cellinit.Config{App: []string{c.argv0}, StateDir: dir}, h)
			s := startIn(t, cfg, &syscall.SysProcAttr{}, []string{"PATH=" + c.path}, wd)
			if status, _ := s.wait(t); status != cellinit.AppStartFailed {
				t.Errorf("%s, %s with PATH %q: status %d, want %d", helperName(h), c.argv0, c.path, status, cellinit.AppStartFailed)
			}
			st, err := cellinit.ReadState(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(st.AppError, c.want) || st.Phase != "" {
				t.Errorf("%s, %s with PATH %q: state %+v, want an AppError with %q and no proxy", helperName(h), c.argv0, c.path, st, c.want)
			}
		}
	}
}

// Given a name twice, either helper passes its first value only, as Go's
// os.Environ does (the helper's environment is the app's), and -home
// replaces HOME's first value in its place.
func TestBothExecAsHelpersPassANamesFirstValueOnly(t *testing.T) {
	env := []string{"PATH=/usr/bin:/bin", "DUP=first", "HOME=/nowhere", "NOEQUALS", "DUP=second", "", "=empty-name", "HOME=/again", "=second-empty-name", "LAST=1"}
	for _, h := range helpers(t) {
		self := h
		if self == "" {
			self = initBin
		}
		uid := strings.TrimSpace(strings.Split(ownStatus(t, "Uid:"), " ")[0])
		want := "PATH=/usr/bin:/bin | DUP=first | HOME=" + passwdHome(uid) + " | NOEQUALS | =empty-name | LAST=1"
		if got := helperEnv(t, self, nil, env); got != want {
			t.Errorf("%s: environment %q, want %q", helperName(h), got, want)
		}
		// Given it on a descriptor (-env-fd), with none of its own.
		if got := helperEnv(t, self, env, nil); got != want {
			t.Errorf("%s -env-fd: environment %q, want %q", helperName(h), got, want)
		}
	}
}

// helperEnv runs helper as "exec-as -home -- env -0" with env as its own
// environment, or with -env-fd and fdEnv on that descriptor where fdEnv is
// not nil, and answers the environment env printed, " | " between entries.
func helperEnv(t *testing.T, helper string, fdEnv, env []string) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	args := []string{helper, execAsArg, "-home"}
	files := []uintptr{0, w.Fd(), 2}
	if fdEnv != nil {
		f, err := os.CreateTemp(t.TempDir(), "env")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(strings.Join(fdEnv, "\x00") + "\x00"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		files = append(files, 2, f.Fd()) // 3 is the helper's error descriptor
		args = append(args, "-env-fd", "4")
	}
	pid, err := syscall.ForkExec(helper, append(args, "--", "/usr/bin/env", "-0"), &syscall.ProcAttr{Env: env, Files: files})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
		t.Fatalf("%s: env exited %v (%v)", helper, ws, err)
	}
	return strings.Join(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), " | ")
}

// cellinit exec-as refuses uid or gid 4294967295, (uid_t)-1, which setresuid
// and setresgid take as "unchanged": the target would keep root.
func TestCellinitExecRefusesTheUnchangedID(t *testing.T) {
	helpers(t)
	for _, user := range []string{"4294967295:2000", "2000:4294967295"} {
		out, err := exec.Command(initBin, execAsArg, "-user", user, "--", "/bin/true").CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != cellinit.AppStartFailed || !strings.Contains(string(out), `invalid value "`+user+`" for flag -user`) {
			t.Errorf("-user %s: %v, %q: want status %d and the value refused", user, err, out, cellinit.AppStartFailed)
		}
	}
}
