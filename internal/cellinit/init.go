package cellinit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/logfile"
)

// Forwarded are the signals the init passes to the app (the agent signals
// the task, that is the init).
var Forwarded = []os.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT,
	unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH, unix.SIGALRM, unix.SIGCONT}

// proxyEnv is the proxy's environment: a runc exec's default, nothing of
// the app's.
var proxyEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// Run is the init: it starts the app and the proxy and supervises both
// until the app exits, and answers the app's status for os.Exit. Its own
// failures go to stderr (the app's log): a failed app start answers
// AppStartFailed and records why in the state file.
func Run(cfg Config, stderr io.Writer) int {
	// Not pid 1 (a test): adopt orphans anyway, to reap them.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	s := &supervisor{cfg: cfg, stderr: stderr, policy: newRestartPolicy(cfg.MaxRestarts)}
	var err error
	if s.self, err = os.Executable(); err != nil {
		return s.appFailed(err)
	}
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, append([]os.Signal{unix.SIGCHLD}, Forwarded...)...)
	defer signal.Stop(sigs)

	s.secureBits = secureBits()
	app := execAs{cred: cfg.AppUser, nofile: cfg.AppNoFile, home: cfg.AppHome, argv: cfg.App}
	files := []uintptr{0, 1, 2}
	var out *appOutput
	if cfg.AppLog != "" {
		if out, err = openAppOutput(cfg.AppLog, cfg.AppLogMaxBytes); err != nil {
			return s.appFailed(fmt.Errorf("open the app's log: %w", err))
		}
		// The log alone: the init's own stdout and stderr are then
		// containerd's null IO (/dev/null opened read-only, where every
		// write fails).
		s.stderr = out.log
		files[1], files[2] = out.w.Fd(), out.w.Fd()
		// Every return, failed starts included: the app's (or the
		// exec-as helper's) last words come before the init's.
		defer out.finish()
	}
	s.appPID, err = s.spawn(app, directLimit(cfg.AppNoFile, len(cfg.Proxy) > 0, cfg.ProxyNoFile), files)
	if out != nil {
		out.w.Close() // the app has its own; EOF once it and its children are gone
	}
	if err != nil {
		out.finish()
		return s.appFailed(err)
	}
	// The app has its credentials; the init keeps only what restarting
	// the proxy and forwarding signals need.
	if err := restrictSelf(); err != nil {
		_ = unix.Kill(s.appPID, unix.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(s.appPID, &ws, 0, nil)
		out.finish()
		return s.appFailed(err)
	}
	health := s.startHealth()
	if len(cfg.Proxy) > 0 {
		if err := s.openProxyOutput(); err != nil {
			fmt.Fprintf(s.stderr, "cellinit: proxy output: %v\n", err)
		}
		s.startProxy()
	} else if s.state.HealthChecks {
		s.write() // the agent learns that the init checks
	}
	for {
		select {
		case r := <-health:
			s.healthRound(r)
		case <-s.retry:
			s.retry = nil
			if s.dirty {
				s.write()
			}
		case sig := <-sigs:
			if sig != unix.SIGCHLD {
				_ = unix.Kill(s.appPID, sig.(syscall.Signal))
				continue
			}
			if status, done := s.reap(); done {
				s.stopProxy()
				return status // out.finish (deferred) copies what is left
			}
		case <-s.restart:
			s.restart = nil
			s.startProxy()
			s.checkSoon()
		case <-s.soon:
			s.soon = nil
			s.kickRound()
		}
	}
}

// supervisor is Run's state; only Run's goroutine touches it.
type supervisor struct {
	cfg  Config
	self string
	// secureBits are the init's (secureBits): spawn starts a child
	// without the exec-as helper only without any.
	secureBits int
	stderr     io.Writer
	appPID     int

	policy     *restartPolicy
	proxyOut   *os.File // write end of the pipe to the proxy's log
	proxyPID   int      // 0: not running
	proxyStart time.Time
	restart    <-chan time.Time
	state      ProxyState
	// dirty says the last write of state failed: the next health round
	// writes it whatever its answer, and retry (armed by the failure)
	// writes it after retryInterval where no rounds run.
	dirty bool
	retry <-chan time.Time
	// kick asks the health loop for a round now (nil: no checks run);
	// soon paces those rounds after a proxy restart, until soonUntil or a
	// round that passes.
	kick      chan<- struct{}
	soon      <-chan time.Time
	soonUntil time.Time
}

// After it restarts the proxy the init runs its checks every
// restartRoundEvery, for at most restartRoundsFor or until a round passes,
// not only every HealthInterval: the agent routes a restarted proxy's
// instance again only when the checks' last report passes (its proxy
// answering says nothing of the app), and a report made while the proxy
// was down would otherwise hold a healthy instance back for an interval.
const (
	restartRoundEvery = 250 * time.Millisecond
	restartRoundsFor  = 30 * time.Second
)

// checkSoon starts the rounds that follow a proxy restart.
func (s *supervisor) checkSoon() {
	if s.kick == nil {
		return
	}
	s.soonUntil = time.Now().Add(restartRoundsFor)
	s.soon = time.After(restartRoundEvery)
}

// kickRound asks for a round (one already asked for is enough) and paces
// the next.
func (s *supervisor) kickRound() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
	if time.Now().Before(s.soonUntil) {
		s.soon = time.After(restartRoundEvery)
	}
}

// retryInterval is how soon a failed state write is tried again.
const retryInterval = time.Second

// startHealth starts the health checks, if configured, and answers the
// channel of their rounds (nil: none run). A ClientHello that cannot be
// read leaves the checks to the agent (HealthChecks stays false).
func (s *supervisor) startHealth() <-chan string {
	if s.cfg.HealthInterval <= 0 || len(s.cfg.HealthChecks) == 0 {
		return nil
	}
	hello, err := readHello(s.cfg.HealthHello)
	if err != nil {
		fmt.Fprintf(s.stderr, "cellinit: health checks left to the agent: %v\n", err)
		return nil
	}
	s.state.HealthChecks = true
	results := make(chan string, 1)
	kick := make(chan struct{}, 1)
	s.kick = kick
	go healthLoop(s.cfg.HealthInterval, s.cfg.HealthChecks, hello, kick, results)
	return results
}

// spawn starts e with files as its descriptors 0, 1, 2: from a thread of
// the init's where it can (startDirect: limitDirect, e's file limit can
// be the init's own, see directLimit; and canStartDirect), else through
// the exec-as helper. It answers the pid or why e did not start.
func (s *supervisor) spawn(e execAs, limitDirect bool, files []uintptr) (int, error) {
	if limitDirect && canStartDirect(e, s.secureBits) {
		return startDirect(e, files)
	}
	return s.spawnHelper(e, files)
}

// spawnHelper starts the helper for e with files as its descriptors 0,
// 1, 2 and waits for its exec: answers the pid or why the target did not
// start. The helper is cfg.ExecHelper where there is one: given the
// environment on a descriptor of its own (envFile), and none of its own,
// so that its C library's start-up code, run as root, never reads the
// app's variables. Where it cannot be executed at all (missing, not
// executable, not a program for this machine), and else, the helper is
// the init itself.
func (s *supervisor) spawnHelper(e execAs, files []uintptr) (int, error) {
	env := e.env
	if env == nil {
		env = os.Environ()
	}
	if h := s.cfg.ExecHelper; h != "" {
		pid, err := forkHelper(h, e, env, files, true)
		var fe *forkError
		if !errors.As(err, &fe) {
			return pid, err
		}
		fmt.Fprintf(s.stderr, "cellinit: exec helper %s: %v: starting the app through cellinit exec-as instead\n", h, err)
	}
	return forkHelper(s.self, e, env, files, false)
}

// forkError is a helper that could not be executed (syscall.ForkExec's
// error), as opposed to the reason it reported for its target.
type forkError struct{ err error }

func (e *forkError) Error() string { return e.err.Error() }
func (e *forkError) Unwrap() error { return e.err }

// forkHelper starts helper for e with env (on a descriptor of its own
// with envByFD, where a memfd can be made) and waits for its exec.
func forkHelper(helper string, e execAs, env []string, files []uintptr, envByFD bool) (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	attr := &syscall.ProcAttr{Env: env, Files: append(files, w.Fd())}
	if envByFD {
		if f, err := envFile(env); err == nil {
			defer f.Close()
			attr.Env = nil
			attr.Files = append(attr.Files, f.Fd())
			e.envFD = len(attr.Files) - 1
		}
	}
	pid, err := syscall.ForkExec(helper, e.args(helper), attr)
	w.Close()
	if err != nil {
		return 0, &forkError{err}
	}
	msg, _ := io.ReadAll(io.LimitReader(r, 4096))
	if len(msg) > 0 {
		// The helper exits at once; the SIGCHLD loop reaps it.
		return 0, fmt.Errorf("%s", msg)
	}
	return pid, nil
}

// envFile answers a memfd holding env, each entry followed by a NUL, read
// from its start (cellinit-exec's -env-fd).
func envFile(env []string) (*os.File, error) {
	fd, err := unix.MemfdCreate("cellinit-env", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "cellinit-env")
	var b []byte
	for _, kv := range env {
		b = append(append(b, kv...), 0)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// appFailed reports an app that could not be started (stderr, the state
// file's AppError) and answers the init's exit status.
func (s *supervisor) appFailed(err error) int {
	fmt.Fprintf(s.stderr, "cellinit: could not start the app: %v\n", err)
	s.state.AppError = err.Error()
	s.write()
	return AppStartFailed
}

func (s *supervisor) openProxyOutput() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	s.proxyOut = w
	var out io.Writer = io.Discard
	if s.cfg.ProxyLog != "" {
		c, err := logfile.OpenCapped(s.cfg.ProxyLog, s.cfg.ProxyLogMaxBytes)
		if err != nil {
			r.Close()
			return err
		}
		out = c
	}
	// Ends with the init (the container): nothing waits for it.
	go func() { _, _ = io.Copy(out, r) }()
	return nil
}

// appOutput copies the app's stdout and stderr (one pipe, w its write
// end) into its capped log, in the init: no logging process of its own
// per container, as containerd's shim runs for a binary:// log URI (its
// start, about 2 ms of CPU, was on every container's start path).
type appOutput struct {
	log  *logfile.Capped
	r, w *os.File
	done chan struct{}
}

// appOutputDrain bounds how long an init whose app exited waits for the
// rest of the app's output: what is in the pipe is read at once; only a
// process the app left behind that still holds the pipe makes it wait
// the whole of it.
const appOutputDrain = 250 * time.Millisecond

func openAppOutput(path string, maxBytes int64) (*appOutput, error) {
	log, err := logfile.OpenCapped(path, maxBytes)
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		log.Close()
		return nil, err
	}
	o := &appOutput{log: log, r: r, w: w, done: make(chan struct{})}
	go o.copy()
	return o, nil
}

// copy moves the app's output into the log until the pipe ends. A write
// that fails (a full disk, a failed rotation) loses that piece, not the
// copy: the init is the pipe's only reader, and an app whose output
// nobody read would block once the pipe is full.
func (o *appOutput) copy() {
	defer close(o.done)
	buf := make([]byte, 32<<10)
	for {
		n, err := o.r.Read(buf)
		if n > 0 {
			_, _ = o.log.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// finish copies what the app wrote before it exited, for at most
// appOutputDrain; a second call, or one on nil, returns at once.
func (o *appOutput) finish() {
	if o == nil {
		return
	}
	_ = o.r.SetReadDeadline(time.Now().Add(appOutputDrain))
	<-o.done
}

func (s *supervisor) startProxy() {
	files := []uintptr{devNull(), devNull(), devNull()}
	if s.proxyOut != nil {
		files[1], files[2] = s.proxyOut.Fd(), s.proxyOut.Fd()
	}
	p := execAs{cred: s.cfg.ProxyUser, nofile: Limit{s.cfg.ProxyNoFile, s.cfg.ProxyNoFile},
		dropCaps: s.cfg.ProxyDropCaps, home: true, dir: "/", argv: s.cfg.Proxy, env: proxyEnv}
	if s.cfg.ProxyNoFile == 0 {
		p.nofile = Limit{}
	}
	// Every later start is this one's again: the init may take its limit.
	pid, err := s.spawn(p, directLimit(p.nofile, true, p.nofile.Hard), files)
	if err != nil {
		s.state.Error = err.Error()
		delay, giveUp := s.policy.failed()
		s.settle(255, delay, giveUp)
		return
	}
	s.proxyPID, s.proxyStart = pid, time.Now()
	s.state.Phase, s.state.PID, s.state.Error, s.state.RestartInMS = PhaseRunning, pid, "", 0
	s.write()
}

// settle records a proxy that is down: a restart after delay, or none.
func (s *supervisor) settle(status int, delay time.Duration, giveUp bool) {
	s.state.Status, s.state.Failures, s.state.PID = status, s.policy.failures, 0
	if giveUp {
		s.state.Phase, s.state.RestartInMS = PhaseFailed, 0
		fmt.Fprintf(s.stderr, "cellinit: proxy exited %d times in a row (last status %d): not restarted\n", s.policy.failures, status)
	} else {
		s.state.Phase, s.state.RestartInMS = PhaseExited, delay.Milliseconds()
		s.restart = time.After(delay)
	}
	s.write()
}

func (s *supervisor) write() {
	if s.cfg.StateDir == "" {
		return
	}
	s.state.Seq++
	err := WriteState(s.cfg.StateDir, s.state)
	s.dirty = err != nil
	if err != nil {
		fmt.Fprintf(s.stderr, "cellinit: write proxy state: %v\n", err)
		if s.retry == nil {
			s.retry = time.After(retryInterval)
		}
	}
}

// healthRound records a round of checks answering r: written when the
// answer changed, or when the last write failed (the agent would
// otherwise never learn the answer it missed).
func (s *supervisor) healthRound(r string) {
	if r == "" {
		s.soon = nil // the restarted proxy (and the app) pass
	}
	if r != s.state.Unhealthy || s.dirty {
		s.state.Unhealthy = r
		s.write()
	}
}

// reap collects every exited child; it answers the app's status once the
// app has exited.
func (s *supervisor) reap() (int, bool) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return 0, false
		}
		switch pid {
		case s.appPID:
			return exitStatus(ws), true
		case s.proxyPID:
			s.proxyPID = 0
			delay, giveUp := s.policy.exited(time.Since(s.proxyStart))
			s.settle(exitStatus(ws), delay, giveUp)
		}
	}
}

// stopProxy kills a running proxy. As pid 1 the init's exit would take
// it anyway; as a test's subprocess it would outlive it.
func (s *supervisor) stopProxy() {
	if s.proxyPID != 0 {
		_ = unix.Kill(s.proxyPID, unix.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(s.proxyPID, &ws, 0, nil)
	}
}

// exitStatus is the status containerd reports for a process that ended
// with ws: its exit code, or 128+N for signal N.
func exitStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

var nullFD uintptr

func devNull() uintptr {
	if nullFD == 0 {
		if f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
			nullFD = f.Fd() // kept open for every restart
		}
	}
	return nullFD
}
