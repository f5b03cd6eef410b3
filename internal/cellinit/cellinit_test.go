package cellinit_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cellagent/cellagent/internal/cellinit"
)

// The tests run the real binary (built once) as a subprocess: the init
// reaps every child of its own and adopts orphans, which must not happen
// to the test binary.
var initBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cellinit-test-")
	if err != nil {
		panic(err)
	}
	initBin = filepath.Join(dir, "cellinit")
	// As scripts/lib.sh build_binaries builds it.
	build := exec.Command("cc", "-static", "-O2", "-Wall", "-o", initBin, "../../cmd/cellinit/cellinit.c")
	if out, err := build.CombinedOutput(); err != nil {
		panic(fmt.Sprintf("cc: %v: %s", err, out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// started is a running init with its stdout (the app's) read line by line.
type started struct {
	cmd   *exec.Cmd
	lines chan string
	out   *lockedBuffer
}

// lockedBuffer is the init's stderr: exec's copying goroutine writes it
// while a test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func start(t *testing.T, cfg cellinit.Config) *started {
	t.Helper()
	return startWith(t, cfg, &syscall.SysProcAttr{})
}

// startWith starts the init with sys (Setpgid is added).
func startWith(t *testing.T, cfg cellinit.Config, sys *syscall.SysProcAttr) *started {
	t.Helper()
	return startIn(t, cfg, sys, nil, "")
}

// startIn starts the init with sys (Setpgid is added), env (nil: the
// test's) and working directory dir ("": the test's).
func startIn(t *testing.T, cfg cellinit.Config, sys *syscall.SysProcAttr, env []string, dir string) *started {
	t.Helper()
	cmd := exec.Command(initBin, cfg.Args()...)
	cmd.Env, cmd.Dir = env, dir
	// Its own process group: the cleanup kills whatever a failed test
	// left running in it (the init is not pid 1 here).
	sys.Setpgid = true
	cmd.SysProcAttr = sys
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &started{cmd: cmd, lines: make(chan string, 100), out: stderr}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if cmd.ProcessState == nil {
			_ = cmd.Wait()
		}
	})
	return s
}

// waitLine reads the app's output up to line (bounded: a hung init fails
// the test instead of hanging it).
func (s *started) waitLine(t *testing.T, line string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				t.Fatalf("app output ended before %q", line)
			}
			if l == line {
				return
			}
		case <-deadline:
			t.Fatalf("no line %q from the app", line)
		}
	}
}

// wait answers the init's exit status and the rest of the app's output.
func (s *started) wait(t *testing.T) (int, string) {
	t.Helper()
	var rest []string
	for l := range s.lines {
		rest = append(rest, l)
	}
	err := s.cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return s.cmd.ProcessState.ExitCode(), strings.Join(rest, "\n")
}

func app(script string) []string { return []string{"/bin/sh", "-c", script} }

func TestInitExitsWithTheAppsStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		want   int
	}{
		{"success", "exit 0", 0},
		{"exit code", "exit 7", 7},
		{"killed by a signal: 128+N as containerd reports it", "kill -KILL $$", 128 + int(syscall.SIGKILL)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, cellinit.Config{App: app(tc.script), Proxy: []string{"/bin/sleep", "100"}})
			if got, _ := s.wait(t); got != tc.want {
				t.Fatalf("exit status %d, want %d (stderr %q)", got, tc.want, s.out)
			}
		})
	}
}

func TestSignalsGoToTheAppAndItsExitStatusIsKept(t *testing.T) {
	s := start(t, cellinit.Config{
		App:   app(`trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done`),
		Proxy: app(`trap 'echo proxy-got-term >&2' TERM; while :; do sleep 0.05; done`),
	})
	s.waitLine(t, "ready")
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	got, rest := s.wait(t)
	if got != 42 || !strings.Contains(rest, "got-term") {
		t.Fatalf("status %d output %q: want 42 after the app's TERM trap", got, rest)
	}
}

func TestAppAndProxyOutputStayApart(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "proxy.log")
	s := start(t, cellinit.Config{
		App:      app(`echo app-line; echo app-err >&2; while [ ! -s ` + log + ` ]; do sleep 0.02; done; echo done`),
		Proxy:    app(`echo proxy-line; echo proxy-err >&2; exec sleep 100`),
		ProxyLog: log, ProxyLogMaxBytes: 1 << 20,
	})
	s.waitLine(t, "app-line")
	s.waitLine(t, "done")
	if got, _ := s.wait(t); got != 0 {
		t.Fatalf("status %d", got)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	proxyLog := string(b)
	if !strings.Contains(proxyLog, "proxy-line") || strings.Contains(proxyLog, "app-") {
		t.Fatalf("proxy log %q: want the proxy's lines only", proxyLog)
	}
	if !strings.Contains(s.out.String(), "app-err") || strings.Contains(s.out.String(), "proxy-") {
		t.Fatalf("app stderr %q: want the app's lines only", s.out)
	}
}

// readState polls the state file until ok accepts it (bounded).
func readState(t *testing.T, dir string, ok func(cellinit.ProxyState) bool) cellinit.ProxyState {
	t.Helper()
	var last cellinit.ProxyState
	for range 400 {
		st, err := cellinit.ReadState(dir)
		if err == nil {
			last = st
			if ok(st) {
				return st
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("proxy state never as wanted; last %+v", last)
	return last
}

func TestProxyIsRestartedThenGivenUpAfterMaxRestarts(t *testing.T) {
	dir := t.TempDir()
	s := start(t, cellinit.Config{
		App:      app(`echo ready; exec sleep 100`),
		Proxy:    app(`echo $$ >>` + filepath.Join(dir, "pids") + `; exit 3`),
		StateDir: dir, MaxRestarts: 2,
	})
	s.waitLine(t, "ready")
	// The delay before each restart doubles from 500 ms (the agent's
	// supervisor's policy).
	for failures, wantMS := range map[int]int64{1: 500, 2: 1000} {
		st := readState(t, dir, func(st cellinit.ProxyState) bool { return st.Failures >= failures })
		if st.Failures == failures && (st.Phase != cellinit.PhaseExited || st.RestartInMS != wantMS) {
			t.Fatalf("state %+v: want exited with a restart in %d ms after %d exits", st, wantMS, failures)
		}
	}
	st := readState(t, dir, func(st cellinit.ProxyState) bool { return st.Phase == cellinit.PhaseFailed })
	if st.Failures != 3 || st.Status != 3 || st.PID != 0 {
		t.Fatalf("state %+v: want failed after 3 exits with status 3", st)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "pids"))
	if pids := strings.Fields(string(b)); len(pids) != 3 {
		t.Fatalf("proxy ran %d times (%v), want 3: the first start and 2 restarts", len(pids), pids)
	}
	if !strings.Contains(s.out.String(), "proxy exited 3 times in a row") {
		t.Fatalf("app stderr %q: want the init's reason", s.out)
	}
	// The app keeps running: the agent fails the instance.
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.wait(t); got != 128+int(syscall.SIGTERM) {
		t.Fatalf("status %d", got)
	}
}

// A state write that fails (here: the directory is gone) is tried again
// a second later, so that the agent learns of the change it missed.
func TestAFailedStateWriteIsRetried(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	gate := filepath.Join(t.TempDir(), "exit-now")
	s := start(t, cellinit.Config{
		App:      app(`echo ready; exec sleep 100`),
		Proxy:    app(`while [ ! -e ` + gate + ` ]; do sleep 0.05; done; exit 7`),
		StateDir: dir, MaxRestarts: 0,
	})
	s.waitLine(t, "ready")
	readState(t, dir, func(st cellinit.ProxyState) bool { return st.Phase == cellinit.PhaseRunning })
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(s.out.String(), "cellinit: write proxy state") })
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st := readState(t, dir, func(st cellinit.ProxyState) bool { return st.Phase != "" })
	if st.Phase != cellinit.PhaseFailed || st.Status != 7 || st.Failures != 1 {
		t.Fatalf("state %+v: want the proxy's failure written again", st)
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	s.wait(t)
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 400 {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("condition never met")
}

func TestARestartedProxyIsReportedWithItsNewPid(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "first-ran")
	// The first proxy exits 9; the second keeps running.
	s := start(t, cellinit.Config{
		App:      app(`echo ready; exec sleep 100`),
		Proxy:    app(`if [ -e ` + marker + ` ]; then exec sleep 100; fi; touch ` + marker + `; exit 9`),
		StateDir: dir, MaxRestarts: 5,
	})
	s.waitLine(t, "ready")
	st := readState(t, dir, func(st cellinit.ProxyState) bool { return st.Phase == cellinit.PhaseRunning && st.Failures == 1 })
	if st.Status != 9 || st.PID == 0 || st.Seq < 3 {
		t.Fatalf("state %+v: want running again after one exit with status 9 (seq: started, exited, started)", st)
	}
	if !alive(st.PID) {
		t.Fatalf("reported proxy pid %d is not running", st.PID)
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	s.wait(t)
	if alive(st.PID) {
		t.Fatalf("proxy %d outlived the init", st.PID)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: a zombie is not alive.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

func TestOrphansAreReaped(t *testing.T) {
	// The app's child starts a grandchild and exits: the grandchild is
	// re-parented to the init, which must reap it when it exits.
	s := start(t, cellinit.Config{App: app(`sh -c 'sleep 0.2 & echo $!'; echo spawned; exec sleep 100`)})
	var orphan int
	select {
	case l := <-s.lines:
		orphan, _ = strconv.Atoi(l)
	case <-time.After(20 * time.Second):
		t.Fatal("no orphan pid")
	}
	s.waitLine(t, "spawned")
	for range 400 {
		if _, err := os.Stat("/proc/" + strconv.Itoa(orphan)); os.IsNotExist(err) {
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			s.wait(t)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("orphan %d was never reaped (still in /proc)", orphan)
}

func TestAnAppThatCannotStartAnswers127WithTheReasonInTheStateFile(t *testing.T) {
	dir := t.TempDir()
	s := start(t, cellinit.Config{App: []string{"/no/such/app"}, Proxy: []string{"/bin/sleep", "100"}, StateDir: dir})
	got, _ := s.wait(t)
	if got != cellinit.AppStartFailed || !strings.Contains(s.out.String(), "could not start the app") || !strings.Contains(s.out.String(), "/no/such/app") {
		t.Fatalf("status %d stderr %q", got, s.out)
	}
	st, err := cellinit.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.AppError, "/no/such/app") || st.Phase != "" {
		t.Fatalf("state %+v: want the app's start error and no proxy started", st)
	}
}

func TestAnAppThatExits127ItselfLeavesNoAppError(t *testing.T) {
	dir := t.TempDir()
	s := start(t, cellinit.Config{App: app("exit 127"), Proxy: []string{"/bin/sleep", "100"}, StateDir: dir})
	// The proxy starts after the app: its state is written either way.
	readState(t, dir, func(st cellinit.ProxyState) bool { return st.Phase == cellinit.PhaseRunning })
	if got, _ := s.wait(t); got != 127 {
		t.Fatalf("status %d", got)
	}
	if st, err := cellinit.ReadState(dir); err != nil || st.AppError != "" {
		t.Fatalf("state %+v (%v): the app started", st, err)
	}
}

func TestAProxyThatCannotStartCountsAsAFailure(t *testing.T) {
	dir := t.TempDir()
	s := start(t, cellinit.Config{App: app(`echo ready; exec sleep 100`), Proxy: []string{"/no/such/proxy"}, StateDir: dir, MaxRestarts: 0})
	s.waitLine(t, "ready")
	st := readState(t, dir, func(st cellinit.ProxyState) bool { return st.Phase == cellinit.PhaseFailed })
	if !strings.Contains(st.Error, "/no/such/proxy") || st.Failures != 1 {
		t.Fatalf("state %+v", st)
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	if got, _ := s.wait(t); got != 128+int(syscall.SIGTERM) {
		t.Fatalf("status %d", got)
	}
}

func TestTheAppKeepsItsEnvironmentAndTheProxyGetsNoneOfIt(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CELLINIT_TEST_SECRET", "app-only")
	s := start(t, cellinit.Config{
		App:   app(`echo "secret=$CELLINIT_TEST_SECRET"; while [ ! -s ` + dir + `/env ]; do sleep 0.02; done; echo done`),
		Proxy: app(`env >` + dir + `/env.tmp; mv ` + dir + `/env.tmp ` + dir + `/env; exec sleep 100`),
	})
	s.waitLine(t, "secret=app-only")
	s.waitLine(t, "done")
	s.wait(t)
	b, _ := os.ReadFile(dir + "/env")
	if strings.Contains(string(b), "CELLINIT_TEST_SECRET") || !strings.Contains(string(b), "PATH=/usr/local/sbin") {
		t.Fatalf("proxy environment %q", b)
	}
}

func TestConfigArgsParseBack(t *testing.T) {
	want := cellinit.Config{
		App: []string{"/app/server", "-flag", "--", "x"}, AppUser: &cellinit.Cred{UID: 2000, GID: 2000},
		AppNoFile: cellinit.Limit{Soft: 1024, Hard: 4096}, AppHome: true,
		Proxy: []string{"/etc/cf-assets/envoy", "-c", "/etc/cf-assets/envoy_config/bootstrap.json"}, ProxyUser: &cellinit.Cred{UID: 2001, GID: 2001},
		ProxyNoFile: 65536, ProxyDropCaps: true, ProxyLog: "/run/x/proxy.log", ProxyLogMaxBytes: 1 << 20,
		StateDir: "/run/x", MaxRestarts: 5,
	}
	got, err := cellinit.Parse(want.Args())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Args(), "\x00") != strings.Join(want.Args(), "\x00") {
		t.Fatalf("parsed %+v from %q", got, want.Args())
	}
}

func TestParseRefusesWhatItCannotRun(t *testing.T) {
	for _, args := range [][]string{
		{}, // no app
		{"-proxy", "p", "-proxy-user", "0:5", "--", "a"}, // proxy as root
		{"-app-user", "2000", "--", "a"},                 // no gid
		{"-app-user", "4294967295:2000", "--", "a"},      // uid -1: setresuid's "unchanged"
		{"-app-user", "2000:4294967295", "--", "a"},      // gid -1 likewise
		{"-app-nofile", "10:5", "--", "a"},               // soft above hard
		{"-max-restarts", "-1", "--", "a"},               // negative
		{"-no-such-flag", "--", "a"},
	} {
		if _, err := cellinit.Parse(args); err == nil {
			t.Errorf("Parse(%q) accepted", args)
		}
	}
}

var _ io.Writer = (*lockedBuffer)(nil)

// With AppLog the init writes the app's stdout and stderr into the capped
// log itself (no logging process beside the container): everything the
// app wrote before it exited is there, stdout and stderr, and the init's
// own message about a failed start too; the init's own stdout gets
// nothing of the app.
func TestAppOutputGoesToTheAppLog(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	// 64 KB: more than a pipe holds, so the copy must keep up with the
	// app, and the last line is written just before it exits.
	s := start(t, cellinit.Config{
		App:    app(`i=0; while [ $i -lt 1024 ]; do echo "line $i of 64 bytes padding padding padding padding pad"; i=$((i+1)); done; echo to-stderr >&2; echo last; exit 3`),
		AppLog: log, AppLogMaxBytes: 1 << 20,
	})
	status, rest := s.wait(t)
	if status != 3 {
		t.Errorf("exit status %d, want the app's 3", status)
	}
	if rest != "" {
		t.Errorf("the init's stdout got %q, want nothing (the app's output is in the log)", rest)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 1026 || lines[0] != "line 0 of 64 bytes padding padding padding padding pad" ||
		lines[1024] != "to-stderr" || lines[1025] != "last" {
		t.Errorf("app log: %d lines, first %q, last two %q; want 1026 ending to-stderr, last", len(lines), lines[0], lines[len(lines)-2:])
	}

	// A start that fails says why in the log, with the init's stdout and
	// stderr what containerd's null IO gives it: /dev/null opened
	// read-only, where every write fails.
	failed := filepath.Join(dir, "failed.log")
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	cmd := exec.Command(initBin, cellinit.Config{App: []string{"/nonexistent/app"}, AppLog: failed}.Args()...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != cellinit.AppStartFailed {
		t.Errorf("failed start: %v, want exit status %d", err, cellinit.AppStartFailed)
	}
	if b, _ := os.ReadFile(failed); !strings.Contains(string(b), "cellinit: could not start the app") || !strings.Contains(string(b), "/nonexistent/app") {
		t.Errorf("log of a failed start: %q", b)
	}

	// So does a command line the init cannot read, past the -app-log.
	bad := filepath.Join(dir, "bad.log")
	err = exec.Command(initBin, "-app-log", bad, "-no-such-flag", "--", "true").Run()
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("bad flags: %v, want exit status 2", err)
	}
	if b, _ := os.ReadFile(bad); !strings.Contains(string(b), "no-such-flag") {
		t.Errorf("log of bad flags: %q", b)
	}
}

// The init copies what the app left in its pipe before it exits. The
// log is a FIFO that the test leaves unread until the app has written
// everything and is about to exit: 128 KB, more than the FIFO holds, so
// the copy is blocked and part of the output is still in the app's pipe
// when the app exits. Then the test reads it all at once: every byte
// must arrive.
func TestAppOutputLeftInThePipeIsCopiedBeforeTheInitExits(t *testing.T) {
	dir := t.TempDir()
	log, written := filepath.Join(dir, "app.log"), filepath.Join(dir, "written")
	if err := syscall.Mkfifo(log, 0o600); err != nil {
		t.Fatal(err)
	}
	// Opened before the init, so that its open for writing does not block.
	r, err := os.OpenFile(log, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// 2048 lines of 64 bytes: less than the FIFO, the copy's buffer and
	// the pipe hold together (64 + 32 + 64 KB), so the app is not blocked.
	const size = 2048 * 64
	s := start(t, cellinit.Config{
		App: app(`i=0; while [ $i -lt 2048 ]; do printf '%063d\n' $i; i=$((i+1)); done; ` +
			`echo $$ >` + written + `.tmp; mv ` + written + `.tmp ` + written + `; exit 5`),
		AppLog: log, AppLogMaxBytes: 16 << 20,
	})
	// Read once the init has reaped the app: an init that did not wait
	// for the copy would be gone by then, with part of the output.
	var pid []byte
	for range 10000 {
		if pid, err = os.ReadFile(written); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for range 10000 {
		if _, err := os.Stat("/proc/" + strings.TrimSpace(string(pid))); err != nil {
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	n, err := io.Copy(io.Discard, r) // until the init, the last writer, is gone
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := s.wait(t); status != 5 {
		t.Errorf("exit status %d, want the app's 5", status)
	}
	if n != size {
		t.Errorf("the log got %d bytes, want %d: output left in the pipe was lost", n, size)
	}
}

// With AppEnv the app's environment comes from that file, which the init
// removes, and none of the init's own reaches the app.
func TestTheAppsEnvironmentComesFromItsFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "app.env")
	if err := os.WriteFile(file, []byte("PATH=/usr/bin:/bin\x00FROM_FILE=yes y\x00"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CELLINIT_TEST_INIT_ONLY", "leak")
	s := start(t, cellinit.Config{App: app(`echo "file=$FROM_FILE init=$CELLINIT_TEST_INIT_ONLY"; echo done`), AppEnv: file})
	s.waitLine(t, "file=yes y init=")
	if status, _ := s.wait(t); status != 0 {
		t.Fatalf("status %d", status)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("the environment file is still there (%v)", err)
	}
	// A file that cannot be read is a start failure.
	state := t.TempDir()
	s = start(t, cellinit.Config{App: app(`echo ran`), AppEnv: filepath.Join(dir, "gone"), StateDir: state})
	if status, _ := s.wait(t); status != cellinit.AppStartFailed {
		t.Fatalf("status %d, want %d", status, cellinit.AppStartFailed)
	}
	if st, _ := cellinit.ReadState(state); !strings.Contains(st.AppError, "read the app's environment") {
		t.Fatalf("state %+v", st)
	}
}

// Only the descriptors 0, 1 and 2 reach the app: one the init inherited
// open stays with it, and a closed 0 is /dev/null for the app, not one of
// the init's own.
func TestOnlyDescriptors0To2ReachTheApp(t *testing.T) {
	extra, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	cmd := exec.Command(initBin, cellinit.Config{App: app(`ls -l /proc/$$/fd | grep -c -- '->'; readlink /proc/$$/fd/0`)}.Args()...)
	cmd.ExtraFiles = []*os.File{extra} // fd 3 of the init, not close-on-exec
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	// fd 0 closed: os/exec would give /dev/null, so start it by hand.
	pid, err := syscall.ForkExec(initBin, append([]string{initBin}, cmd.Args[1:]...), &syscall.ProcAttr{
		Env: []string{"PATH=/usr/bin:/bin"}, Files: []uintptr{^uintptr(0), w.Fd(), 2, extra.Fd()}})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(r)
	var ws syscall.WaitStatus
	_, _ = syscall.Wait4(pid, &ws, 0, nil)
	lines := strings.Fields(string(out))
	// ls's own descriptor for /proc/PID/fd is the shell's child's, not
	// the shell's: 0, 1, 2 are all the shell has.
	if len(lines) != 2 || lines[0] != "3" || lines[1] != "/dev/null" {
		t.Fatalf("the app's descriptors: %q, want 3 of them and /dev/null as 0", out)
	}
}

// The state file is valid UTF-8 JSON whatever bytes its messages hold:
// an app path that is not UTF-8 comes back with U+FFFD, as encoding/json
// writes it.
func TestTheStateFileIsValidJSONForAnyBytes(t *testing.T) {
	dir := t.TempDir()
	s := start(t, cellinit.Config{App: []string{"/no/such/app-\xff\xfe"}, StateDir: dir})
	if status, _ := s.wait(t); status != cellinit.AppStartFailed {
		t.Fatalf("status %d", status)
	}
	b, err := os.ReadFile(filepath.Join(dir, cellinit.StateFile))
	if err != nil || !utf8.Valid(b) || !json.Valid(b) {
		t.Fatalf("state file %q (%v): want valid UTF-8 JSON", b, err)
	}
	if st, _ := cellinit.ReadState(dir); !strings.Contains(st.AppError, "/no/such/app-\ufffd\ufffd") {
		t.Fatalf("app error %q", st.AppError)
	}
}
