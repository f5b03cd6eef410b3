package proxyhook

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/credmanager"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/atomicfile"
	"github.com/cellagent/cellagent/internal/cellinit"
	"github.com/cellagent/cellagent/internal/tickgrid"
	"github.com/cellagent/cellagent/proxyconfig"
)

// With Config.InitBinary set, the proxy is not a runc exec beside the app:
// cellinit is the container's first process and starts both (issue 16;
// see internal/cellinit). The proxy's log and cellinit's state file live
// in the instance's log directory, mounted read-write at InitRunDir (root
// only, mode 0750: a non-root app cannot enter it). The hook learns the
// proxy's exits and restarts from the state file (replaced on every
// change): woken by one inotify watch for all instances (statewatch.go),
// with a look every 30 StatePolls behind it, or polled every StatePoll
// where inotify is unavailable; also after an agent restart, so adoption
// needs nothing from containerd. An app cellinit
// could not start is a start failure (StartError); a root app keeps the
// proxy's runc exec (underInit).
const (
	// InitPath is where cellinit is mounted in the container.
	InitPath = "/etc/cf-assets/cellinit"
	// InitRunDir is the instance's log directory in the container.
	InitRunDir = "/etc/cf-assets/cellinit-run"
)

// underInit says whether inst runs under cellinit. An app that is root
// (uid or gid 0, a privileged request) keeps the proxy's runc exec: the
// directory cellinit writes is mounted read-write, and only root's mode
// bits keep the app out of it, which a root app would pass. Without
// cellinit the app sees nothing of it.
func underInit(inst *containerstore.Instance) bool {
	return inst.User.UID != 0 && inst.User.GID != 0
}

// runDir is guid's log directory on the host: the proxy's log is there.
func (h *Hook) runDir(guid string) string {
	return filepath.Dir(containerstore.LogPath(h.cfg.DataDir, guid, executor.LogSourceProxy))
}

// setupInit makes inst's first process cellinit, which runs the proxy: it
// answers cellinit's mounts and the ProcessInit for the ProxyResult.
// An initial state file (seq 0) marks the instance as run by cellinit for
// an agent that adopts it, whatever its own configuration then says.
func (f filesHook) setupInit(inst *containerstore.Instance) ([]containerstore.Mount, *containerstore.ProcessInit, error) {
	h := f.h
	dir := h.runDir(inst.GUID)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, err
	}
	if err := cellinit.WriteState(dir, cellinit.ProxyState{Phase: "starting"}); err != nil {
		return nil, nil, fmt.Errorf("proxy state: %w", err)
	}
	argv := proxyconfig.Command(binaryPath(h.cfg.HostBinary), h.cfg.Proxy)
	mounts := []containerstore.Mount{
		{Source: h.cfg.InitBinary, Destination: InitPath, ReadOnly: true},
		{Source: dir, Destination: InitRunDir}}
	cfg := cellinit.Config{
		Proxy: argv, ProxyUser: &cellinit.Cred{UID: h.cfg.User.UID, GID: h.cfg.User.GID}, ProxyNoFile: h.cfg.NoFile,
		ProxyDropCaps: true, ProxyLog: InitRunDir + "/" + executor.LogSourceProxy + ".log", ProxyLogMaxBytes: h.cfg.LogMaxBytes,
		// The app's log is in the same directory (containerstore.LogPath):
		// the init writes it, and the runtime starts no logging process.
		AppLog: InitRunDir + "/" + executor.LogSourceApp + ".log", AppLogMaxBytes: h.cfg.LogMaxBytes,
		StateDir: InitRunDir, MaxRestarts: h.cfg.MaxRestarts, AppEnv: InitRunDir + "/" + appEnvFile,
	}
	if err := f.initHealth(inst, dir, &cfg); err != nil {
		return nil, nil, err
	}
	return mounts, &containerstore.ProcessInit{Path: InitPath, Config: cfg, AppEnvHostPath: filepath.Join(dir, appEnvFile)}, nil
}

// appEnvFile holds, in an instance's run directory, the app's environment
// from the container's creation until cellinit read it (it removes it).
const appEnvFile = "app.env"

// healthHelloFile holds, in an instance's run directory, the ClientHello
// cellinit's tls checks send.
const healthHelloFile = "health-hello"

// initHealth has cellinit run inst's liveness checks (HealthInterval):
// what Alive and the store's app check did from the host, every interval
// per instance, now inside the container, reported when the answer
// changes (see internal/cellinit/health.go). A ClientHello to each proxy
// port, made by the verifier as for probe and written to dir; the app's
// own check unless a proxy's answer covers it (CoversTCP).
func (f filesHook) initHealth(inst *containerstore.Instance, dir string, cfg *cellinit.Config) error {
	h := f.h
	if h.cfg.HealthInterval <= 0 {
		return nil
	}
	var checks []cellinit.HealthCheck
	if c := inst.Request.Check; c != nil && (c.TCP == nil || !f.CoversTCP(inst, c.TCP.Port)) {
		switch {
		case c.TCP != nil:
			checks = append(checks, cellinit.HealthCheck{Kind: cellinit.CheckTCP,
				Addr: net.JoinHostPort(inst.InternalIP, strconv.Itoa(int(c.TCP.Port)))})
		case c.HTTP != nil:
			target, err := executor.ParseCheckPath(c.HTTP.Path)
			if err != nil {
				return fmt.Errorf("http check: %w", err)
			}
			checks = append(checks, cellinit.HealthCheck{Kind: cellinit.CheckHTTP,
				Addr: net.JoinHostPort(inst.InternalIP, strconv.Itoa(int(c.HTTP.Port))), Path: target.RequestURI()})
		}
	}
	for _, m := range inst.Ports {
		if m.ContainerTLSProxyPort != 0 {
			checks = append(checks, cellinit.HealthCheck{Kind: cellinit.CheckTLS,
				Addr: net.JoinHostPort(inst.InternalIP, strconv.Itoa(int(m.ContainerTLSProxyPort)))})
		}
	}
	if len(checks) == 0 {
		return nil
	}
	hello, err := h.verifier.clientHello(inst.GUID)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, healthHelloFile), hello, 0o600, atomicfile.NoSync); err != nil {
		return fmt.Errorf("health check ClientHello: %w", err)
	}
	cfg.HealthInterval, cfg.HealthChecks, cfg.HealthHello = h.cfg.HealthInterval, checks, InitRunDir+"/"+healthHelloFile
	return nil
}

// runByInit says whether guid's proxy is cellinit's: its state file exists.
func (h *Hook) runByInit(guid string) bool {
	_, err := os.Stat(filepath.Join(h.runDir(guid), cellinit.StateFile))
	return err == nil
}

// superviseInit follows the proxy that cellinit runs in guid: one this
// agent started (its instance has Init from setupInit) or one adopted
// after a restart (Restore's instance has none; first is what Adopt read
// of its state file, nil when it read nothing).
func (f filesHook) superviseInit(guid string, first *initLook) {
	f.h.mu.Lock()
	in, ok := f.h.instances[guid]
	started := ok && in.inst != nil && in.inst.Init != nil
	f.h.mu.Unlock()
	if sup := f.claimSupervisor(guid, 0); sup != nil {
		go f.watchInit(guid, sup, started, first)
	}
}

// initLook is one look at an instance's state file: the file seen and
// the state it held.
type initLook struct {
	seen  fs.FileInfo
	state cellinit.ProxyState
}

// adoptInitState reads the state file of an adopted instance and keeps
// what it says of the liveness checks (setInitHealth) before Adopt
// returns: the adoption's first route asks for it (ReportedLiveness).
// watchInit acts on the same look first, so every later change of the
// checks' answer reaches the store as a Liveness notice, sent after that
// route asked. It answers nil when the file cannot be read (watchInit
// logs why).
func (f filesHook) adoptInitState(guid string) *initLook {
	dir := f.h.runDir(guid)
	st, err := os.Stat(filepath.Join(dir, cellinit.StateFile))
	if err != nil {
		return nil
	}
	cur, err := cellinit.ReadState(dir)
	if err != nil {
		return nil
	}
	f.setInitHealth(guid, cur)
	return &initLook{seen: st, state: cur}
}

// watchInit polls cellinit's state file and does what restartLoop does
// for a proxy it runs itself: unroute at an exit, an event per restart,
// reroute once the restarted proxy answers, fail the instance when
// cellinit gave up. first, when not nil, is acted on before the first
// look of its own.
func (f filesHook) watchInit(guid string, sup *supervisor, started bool, first *initLook) {
	defer f.h.wg.Done()
	defer close(sup.done)
	h := f.h
	logger := h.logger.Session("supervise-init", lager.Data{guidKey: guid})
	path := filepath.Join(h.runDir(guid), cellinit.StateFile)
	// Woken by the state watch when the file is replaced, with a slow
	// tick behind it; polled every StatePoll without the watch. The watch
	// is made before the first look of its own (which compares the file
	// with first's), so no change falls between them.
	poll := h.cfg.StatePoll
	var wake <-chan struct{}
	if w := h.stateWatch(); w != nil {
		if ch, remove, err := w.add(filepath.Dir(path)); err == nil {
			defer remove()
			wake, poll = ch, stateFallbackPolls*h.cfg.StatePoll
		} else {
			logger.Info("state-watch-unavailable", lager.Data{"error": err.Error(), "poll": h.cfg.StatePoll.String()})
		}
	}
	// The polls fall on a whole-second grid (tickgrid), shared by every
	// instance's watch and health rounds: at 500 instances a 30 s poll on
	// each instance's own phase woke the agent 17 times a second.
	clk := h.cfg.Clock
	next := tickgrid.Next(clk.Now().Add(poll), statePollTick)
	t := clk.NewTimer(next.Sub(clk.Now()))
	defer t.Stop()
	var seen fs.FileInfo
	var last cellinit.ProxyState
	// act acts on a state read; it answers true when supervision ends.
	act := func(cur cellinit.ProxyState) bool {
		if cur.Seq == last.Seq {
			return false
		}
		f.setInitHealth(guid, cur)
		if done := f.initChanged(logger, guid, sup, last, cur, started || last.Seq > 0); done {
			return true
		}
		last = cur
		return false
	}
	if first != nil {
		seen = first.seen
		if act(first.state) {
			return
		}
	}
	for {
		if st, err := os.Stat(path); err == nil && stateChanged(seen, st) {
			seen = st
			cur, err := cellinit.ReadState(filepath.Dir(path))
			if err != nil {
				logger.Error("read-proxy-state", err)
			} else if act(cur) {
				return
			}
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			logger.Error("stat-proxy-state", err)
		}
		select {
		case <-sup.stop:
			return
		case <-t.C():
			now := clk.Now()
			next = tickgrid.After(next, now, poll)
			t.Reset(next.Sub(now))
		case <-wake:
			seen = nil // replaced: read it even if a reused inode and mtime look the same
		}
	}
}

// stateChanged says whether the state file st may differ from the one
// seen (nil: none yet): another inode, mtime, size or ctime. An atomic
// replace within the mtime's granularity that reuses the inode still
// changes its ctime or, mostly, its size.
func stateChanged(seen, st fs.FileInfo) bool {
	if seen == nil || !os.SameFile(st, seen) || !st.ModTime().Equal(seen.ModTime()) || st.Size() != seen.Size() {
		return true
	}
	a, okA := st.Sys().(*syscall.Stat_t)
	b, okB := seen.Sys().(*syscall.Stat_t)
	return !okA || !okB || a.Ctim != b.Ctim
}

// setInitHealth keeps what cur says of cellinit's liveness checks for
// Alive: a proxy that is down fails them until cellinit reports it
// running again (its checks may not have run since it exited).
func (f filesHook) setInitHealth(guid string, cur cellinit.ProxyState) {
	unhealthy := cur.Unhealthy
	if cur.Phase != cellinit.PhaseRunning {
		unhealthy = fmt.Sprintf("proxy not ready: cellinit reports it %s (last status %d)", cur.Phase, cur.Status)
	}
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	if in, ok := f.h.instances[guid]; ok {
		in.initChecks, in.unhealthy = cur.HealthChecks, unhealthy
	}
}

// confirmedFile, in an instance's run directory, holds the serial its
// proxy was last confirmed to serve (a Verify or a rotation's confirm) and
// the identity CA it was confirmed against (confirmedRecord).
const confirmedFile = "confirmed-serial"

// confirmedRecord is confirmedFile's content for serial: with another CA
// (the operator replaced it while the agent was down) nothing counts as
// confirmed.
func (h *Hook) confirmedRecord(serial string) string {
	sum := sha256.Sum256(h.cfg.CACertPEM)
	return serial + " " + hex.EncodeToString(sum[:8]) + "\n"
}

// confirmed records that guid's proxy serves serial (NoSync: it outlives
// only the container, as the state file does), checked at SDS generation
// gen: not when the SDS files were rewritten since (sdsWriting), which
// removed the record and may have changed what the proxy serves. Under
// h.mu, so no rewrite falls between the check and the write. A failed
// write costs the next adoption a Verify, nothing else.
func (h *Hook) confirmed(logger lager.Logger, in *instance, guid, serial string, gen uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if in.sdsGen != gen {
		logger.Info("confirmed-serial-outdated", lager.Data{guidKey: guid, "serial": serial})
		return
	}
	if err := atomicfile.WriteFile(filepath.Join(h.runDir(guid), confirmedFile), []byte(h.confirmedRecord(serial)), 0o600, atomicfile.NoSync); err != nil {
		logger.Info("confirmed-serial-not-recorded", lager.Data{guidKey: guid, "error": err.Error()})
	}
}

// sdsWriting is called before guid's SDS files are rewritten (a rotation,
// the drain): it bumps the instance's SDS generation, so that no Verify or
// confirm begun earlier records its serial, and removes the record of the
// last confirmed serial, so that an agent killed before the rewrite is
// confirmed leaves an adoption that verifies. It answers the new
// generation.
func (h *Hook) sdsWriting(in *instance, guid string) (uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	in.sdsGen++
	if err := os.Remove(filepath.Join(h.runDir(guid), confirmedFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return in.sdsGen, err
	}
	return in.sdsGen, nil
}

// adoptExpiryMargin is how long before its NotAfter a served certificate
// no longer counts as confirmed at adoption: it is about to expire, and a
// Verify (which fails on an expired one) is cheap next to a lost route.
const adoptExpiryMargin = time.Minute

var _ containerstore.AdoptConfirmer = filesHook{}

// ConfirmedAtAdoption says that an adopted cellinit instance needs no
// Verify (a TLS handshake through its host port): the serial its proxy was
// last confirmed to serve is the one it must serve (the agent that stopped
// left no rotation unconfirmed), the identity SDS file holds that serial
// (what the proxy serves after a reload or restart: not a drain's invalid
// certificate) in a certificate valid now (NotBefore <= now < NotAfter,
// with adoptExpiryMargin), cellinit reports the proxy running (one
// restarted since reads the same files) and its health checks, if it runs
// them, passing. Anything else, or a file missing, verifies as before.
func (f filesHook) ConfirmedAtAdoption(inst *containerstore.Instance) bool {
	in, ok := f.instance(inst.GUID)
	if !ok || !proxied(inst) {
		return false
	}
	f.h.mu.Lock()
	want := in.serial
	f.h.mu.Unlock()
	dir := f.h.runDir(inst.GUID)
	got, err := os.ReadFile(filepath.Join(dir, confirmedFile))
	if err != nil || want == "" || string(got) != f.h.confirmedRecord(want) {
		return false
	}
	cert, err := proxyconfig.ReadCertificate(f.h.dir(inst.GUID))
	if err != nil || credmanager.FormatSerial(cert.SerialNumber) != want {
		return false
	}
	if now := f.h.cfg.Clock.Now(); now.Before(cert.NotBefore) || !now.Add(adoptExpiryMargin).Before(cert.NotAfter) {
		return false
	}
	st, err := cellinit.ReadState(dir)
	return err == nil && st.Phase == cellinit.PhaseRunning && st.Unhealthy == ""
}

// stateFallbackPolls is how many StatePolls pass between two looks at a
// watched state file without an event (a lost event delays a change by at
// most that, never hides it).
const stateFallbackPolls = 30

// statePollTick is the grid the state polls fall on.
const statePollTick = time.Second

// initChanged acts on a new state; it answers true when supervision ends
// (the instance failed). Polling may miss a state in between: a change of
// the failure count or of the pid is an exit all the same, and gets its
// unroute and proxy_restarted event as an exit seen in its own state
// does. known says prev is what the proxy was: a state seen before, or
// the zero state of a proxy this agent just started (whose first polled
// state may already be after an exit). The first state seen after an
// adoption is not known: it is an exit only when the proxy is down now;
// earlier restarts of a proxy that runs are history.
func (f filesHook) initChanged(logger lager.Logger, guid string, sup *supervisor, prev, cur cellinit.ProxyState, known bool) bool {
	down := cur.Phase == cellinit.PhaseExited || cur.Phase == cellinit.PhaseFailed
	newExit := (down && cur.Phase != prev.Phase) ||
		(known && (cur.Failures != prev.Failures || (prev.PID != 0 && cur.PID != prev.PID)))
	if newExit {
		logger.Info("proxy-exited", lager.Data{"status": cur.Status, "failures": cur.Failures})
		f.h.notify(containerstore.ProxyExited{GUID: guid})
	}
	switch {
	case cur.Phase == cellinit.PhaseFailed:
		reason := fmt.Sprintf("instance proxy failed: exited %d times in a row (last status %d)", cur.Failures, cur.Status)
		if cur.Error != "" {
			reason = "instance proxy failed: " + cur.Error
		}
		f.h.notify(containerstore.Failed{GUID: guid, Code: executor.FailureProxyFailed, Reason: reason})
		return true
	case newExit && cur.Phase == cellinit.PhaseExited:
		delay := time.Duration(cur.RestartInMS) * time.Millisecond
		f.h.notify(containerstore.ProxyRestarting{GUID: guid,
			Message: fmt.Sprintf("proxy exited with status %d; restart %d in %s", cur.Status, cur.Failures, delay)})
	case newExit:
		f.h.notify(containerstore.ProxyRestarting{GUID: guid,
			Message: fmt.Sprintf("proxy exited with status %d; restart %d running", cur.Status, cur.Failures)})
	}
	if cur.HealthChecks && cur.Unhealthy != prev.Unhealthy {
		// The checks' answer changed (or is first seen failing after an
		// adoption): the store unroutes or routes as its own check would.
		logger.Info("liveness-changed", lager.Data{"unhealthy": cur.Unhealthy})
		f.h.notify(containerstore.Liveness{GUID: guid, Err: cur.Unhealthy})
	}
	if known && cur.Phase == cellinit.PhaseRunning && cur.Failures > 0 && cur.PID != prev.PID {
		f.rerouteWhenReady(guid, sup)
	}
	return false
}

// StartError answers why cellinit could not start guid's app, when it
// exited with AppStartFailed and its state file says so (an app that ran
// and exited 127 itself leaves no AppError): the store reports that as a
// start failure, as runc's start error was without cellinit.
func (f filesHook) StartError(guid string, status int) error {
	if status != cellinit.AppStartFailed || !f.h.runByInit(guid) {
		return nil
	}
	st, err := cellinit.ReadState(f.h.runDir(guid))
	if err != nil || st.AppError == "" {
		return nil
	}
	return fmt.Errorf("start task %s: cellinit could not start the app: %s", guid, st.AppError)
}
