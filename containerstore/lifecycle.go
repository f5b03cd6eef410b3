package containerstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/backoff"
	"github.com/cellagent/cellagent/internal/cellinit"
	"github.com/cellagent/cellagent/internal/listenprobe"
	"github.com/cellagent/cellagent/internal/tickgrid"
)

// exitError is a start that ended because the app exited.
type exitError struct{ exit Exit }

func (e *exitError) Error() string {
	if e.exit.Err != nil {
		return fmt.Sprintf("task wait failed: %v", e.exit.Err)
	}
	return fmt.Sprintf("app exited with status %d before it was ready", e.exit.Status)
}

// failure is a start error with its failure code, set where the step that
// failed is known.
type failure struct {
	code executor.FailureCode
	err  error
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// failureCode answers the code of a start error: an app exit, no room,
// the code a step gave it, else FailureOther.
func failureCode(err error) executor.FailureCode {
	var ee *exitError
	var f *failure
	switch {
	case errors.As(err, &ee) && ee.exit.Err == nil:
		return executor.FailureAppExited
	case errors.Is(err, executor.ErrInsufficientResources):
		return executor.FailureInsufficientResources
	case errors.As(err, &f):
		return f.code
	}
	return executor.FailureOther
}

// lifecycle starts a container and supervises it until its task exits or
// the agent stops supervising. It owns c.exited and c.done.
func (s *Store) lifecycle(ctx context.Context, c *container) {
	defer s.wg.Done()
	defer close(c.done)
	logger := s.logger.Session("lifecycle", lager.Data{guidKey: c.info.GUID})
	defer s.disown(logger, c)
	exits, err := s.start(ctx, logger, c)
	if err != nil {
		s.failStart(logger, c, exits, err)
		return
	}
	s.supervise(logger, c, exits)
}

// failStart completes a container whose start failed: a task that runs
// but never got ready is killed and waited for; a stop or Fail during the
// start decides the result. Used by lifecycle and by adoption. It owns
// closing c.exited.
func (s *Store) failStart(logger lager.Logger, c *container, exits <-chan Exit, err error) {
	if s.rootCtx.Err() != nil {
		return // agent shutting down; recovery decides on restart
	}
	var ee *exitError
	ownExit := false
	if errors.As(err, &ee) {
		ownExit = s.markExited(c)
	} else if exits != nil {
		_ = s.deps.Tasks.Signal(context.Background(), c.info.GUID, syscall.SIGKILL)
		select {
		case <-exits:
		case <-s.deps.Clock.After(killWait):
		}
	}
	close(c.exited)
	s.notifyStopping(logger, c.info.GUID)
	stopping, failReason, failCode := s.stopCause(c, ownExit && ee.exit.Err == nil)
	notStarted := ee != nil && ee.exit.Err == nil && s.startError(c.info.GUID, int(ee.exit.Status), &err)
	result := executor.RunResult{Failed: true, FailureReason: err.Error(), FailureCode: failureCode(err)}
	if failReason != "" {
		result.FailureReason, result.FailureCode = failReason, failCode
	} else if stopping {
		result = executor.RunResult{Stopped: true}
	}
	if ee != nil && !notStarted {
		status := int(ee.exit.Status)
		result.ExitStatus = &status
	}
	logger.Info("start-failed", lager.Data{errorKey: err.Error(), "stopping": stopping})
	s.complete(logger, c, result)
}

// supervise waits for the task's exit, unregisters routes and completes.
//
// While it waits it applies the notices the store hands it (notices.go)
// and re-checks readiness every HealthInterval: an instance that stops
// being ready is unregistered until it is ready again.
func (s *Store) supervise(logger lager.Logger, c *container, exits <-chan Exit) {
	var ex Exit
	var health <-chan time.Time
	var next time.Time // the next health round, on the grid
	round := 0         // health rounds so far
	var t clock.Timer
	if s.cfg.HealthInterval > 0 {
		next = tickgrid.Next(s.deps.Clock.Now().Add(s.cfg.HealthInterval), healthTick)
		t = s.deps.Clock.NewTimer(next.Sub(s.deps.Clock.Now()))
		defer t.Stop()
		health = t.C()
	}
wait:
	for {
		select {
		case ex = <-exits:
			if ex.Err != nil && s.rootCtx.Err() == nil {
				// The wait broke, not the task (containerd restarted):
				// attach again and keep supervising.
				if next, ok := s.reattach(logger, c); ok {
					exits = next
					continue
				}
			}
			break wait
		case <-s.rootCtx.Done():
			return
		case <-c.notices.ready():
			s.applyNotices(logger, c)
		case <-health:
			// Absolute times: each instance's rounds stay on the grid
			// however late this goroutine ran.
			now := s.deps.Clock.Now()
			next = tickgrid.After(next, now, s.cfg.HealthInterval)
			t.Reset(next.Sub(now))
			s.checkHealth(logger, c)
			if round%diskCheckEvery == 0 {
				s.checkDisk(logger, c)
			}
			round++
		}
	}
	if s.rootCtx.Err() != nil {
		return // the wait was cut by our own shutdown, not by an exit
	}
	ownExit := s.markExited(c)
	close(c.exited)
	s.notifyStopping(logger, c.info.GUID)
	s.unroute(logger, c)
	stopping, failReason, failCode := s.stopCause(c, ownExit && ex.Err == nil)
	status := int(ex.Status)
	result := executor.RunResult{ExitStatus: &status}
	var notStarted error
	switch {
	case failReason != "":
		result.Failed, result.FailureReason, result.FailureCode = true, failReason, failCode
	case stopping:
		result.Stopped = true
	case ex.Err != nil:
		result.Failed, result.FailureReason, result.FailureCode = true, "task wait failed: "+ex.Err.Error(), executor.FailureOther
	case s.startError(c.info.GUID, status, &notStarted):
		result = executor.RunResult{Failed: true, FailureReason: notStarted.Error(), FailureCode: failureCode(notStarted)}
	default:
		result.Failed, result.FailureReason, result.FailureCode = true, fmt.Sprintf("app exited with status %d", ex.Status), executor.FailureAppExited
	}
	logger.Info("task-exited", lager.Data{"status": ex.Status, "stopping": stopping})
	s.complete(logger, c, result)
}

// healthTick is the grid every instance's health rounds fall on
// (tickgrid): the runtime fires the timers due at one instant in one
// wake-up, where rounds spread over the interval woke a thread (and the
// runtime's sysmon) once per instance. An instance's first round comes up
// to one tick after HealthInterval, and every later one HealthInterval
// after the one before it (issue 16: idle agent CPU at 500 instances).
const healthTick = time.Second

// startError asks the pipeline whether a task that exited with status
// never started its app (StartExplainer); if so it sets *err to why.
func (s *Store) startError(guid string, status int, err *error) bool {
	for _, h := range s.hooks {
		if e, ok := h.(StartExplainer); ok {
			if why := e.StartError(guid, status); why != nil {
				*err = why
				return true
			}
		}
	}
	return false
}

// markExited records that the app's exit was seen and answers whether it
// came before any stop signalled the task: then the app exited by itself
// and a proxy failure reported meanwhile must not mask its status.
func (s *Store) markExited(c *container) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.appExited = true
	return !c.signalled
}

// stopCause answers whether c was being stopped and why it failed, if a
// Fail stopped it. A Fail that came too late to signal an app that had
// already exited by itself (ownExit) is no cause: the app's exit wins.
func (s *Store) stopCause(c *container, ownExit bool) (stopping bool, failReason string, failCode executor.FailureCode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ownExit && c.failReason != "" {
		return false, "", ""
	}
	return c.stopping, c.failReason, c.failCode
}

// reattach waits for containerd to answer again and re-attaches to c's
// task. It answers false when the task is gone (the caller completes the
// container) or the agent is shutting down.
func (s *Store) reattach(logger lager.Logger, c *container) (<-chan Exit, bool) {
	retry := backoff.New(s.deps.Clock, 250*time.Millisecond, 8*time.Second)
	for attempt := 0; ; attempt++ {
		exits, err := s.deps.Tasks.Attach(s.rootCtx, logger, c.info.GUID)
		if err == nil {
			logger.Info("reattached", lager.Data{"attempts": attempt + 1})
			s.publish(executor.EventContainerAdopted, c.info.GUID, "re-attached to the task after losing the wait (containerd restart?)", nil)
			return exits, true
		}
		if errors.Is(err, executor.ErrContainerNotFound) {
			logger.Error("task-gone", err)
			return nil, false
		}
		logger.Info("waiting-for-containerd", lager.Data{errorKey: err.Error(), "attempt": attempt + 1})
		if !retry.Wait(s.rootCtx.Done()) {
			return nil, false
		}
	}
}

// checkHealth runs the readiness checks once on a running container and
// routes or unroutes it by the answer.
func (s *Store) checkHealth(logger lager.Logger, c *container) {
	s.mu.Lock()
	inst, state, stopping := c.inst, c.info.State, c.stopping
	s.mu.Unlock()
	if inst == nil || state != executor.StateRunning || stopping {
		return
	}
	ctx, cancel := context.WithTimeout(s.rootCtx, 5*time.Second)
	err := s.aliveOnce(ctx, inst)
	cancel()
	s.healthAnswer(logger, c, err)
}

// healthAnswer unroutes a routable c whose liveness failed (err) and
// routes a running c that is alive again; checkHealth and a Liveness
// notice call it from c's lifecycle goroutine.
func (s *Store) healthAnswer(logger lager.Logger, c *container, err error) {
	s.mu.Lock()
	inst, state, routable, stopping := c.inst, c.info.State, c.info.Routable, c.stopping
	s.mu.Unlock()
	if inst == nil || state != executor.StateRunning || stopping {
		return
	}
	switch {
	case err != nil && routable:
		logger.Info("not-ready-unrouting", lager.Data{errorKey: err.Error()})
		s.unroute(logger, c)
		s.publish(executor.EventContainerRoutable, c.info.GUID, "not ready: "+err.Error(), nil)
	case err == nil && !routable:
		s.route(logger, c)
	}
}

func (s *Store) complete(logger lager.Logger, c *container, result executor.RunResult) {
	s.mu.Lock()
	if c.info.State == executor.StateCompleted {
		s.mu.Unlock()
		return
	}
	if err := s.transitionLocked(c, executor.StateCompleted); err != nil {
		s.mu.Unlock()
		logger.Error("complete", err)
		return
	}
	c.info.RunResult = result
	c.info.Routable = false
	snap := s.viewLocked(c)
	s.mu.Unlock()
	s.save(c)
	msg := "state completed: " + result.FailureReason
	if !result.Failed {
		msg = "state completed: stopped"
	}
	s.publishCompleted(c.info.GUID, msg, &snap)
}

// start runs initialize -> created -> running. A non-nil exits means the
// task was started.
func (s *Store) start(ctx context.Context, logger lager.Logger, c *container) (<-chan Exit, error) {
	s.mu.Lock()
	guid, req, res := c.info.GUID, c.request, c.info.Resources
	s.mu.Unlock()

	imageCfg, err := s.deps.Runtime.PullImage(ctx, logger, req.Image, req.ImageAuth)
	// The registry login served the pull, done or failed: it is kept no
	// longer.
	req.ImageAuth = nil
	s.mu.Lock()
	c.request.ImageAuth = nil
	s.mu.Unlock()
	if err != nil {
		return nil, &failure{executor.FailureSetup, fmt.Errorf("image: %w", err)}
	}
	user, err := s.deps.Runtime.Prepare(ctx, logger, guid, req.Image, req.Process.User)
	if err != nil {
		return nil, &failure{executor.FailureSetup, fmt.Errorf("prepare rootfs: %w", err)}
	}
	if err := s.checkPrivilege(req, user); err != nil {
		return nil, err
	}
	// inst is private to this goroutine until the steps' results are merged;
	// only then is it published in c (Explain and health checks read it).
	inst := &Instance{GUID: guid, Request: req, User: user, DiskMB: res.DiskMB}
	if err := s.deps.Pipeline.runSetup(ctx, logger, inst, s.defaultHostNetwork); err != nil {
		return nil, err
	}
	if cr := inst.Credentials; cr != nil {
		s.publish(executor.EventCredentialsIssued, guid, fmt.Sprintf("credentials issued: serial %s, valid until %s", cr.Serial, cr.NotAfter.Format(time.RFC3339)), nil)
	}

	s.mu.Lock()
	c.user, c.inst = user, inst
	c.info.InternalIP, c.info.ExternalIP, c.info.Ports = inst.InternalIP, inst.ExternalIP, inst.Ports
	c.info.Credentials = inst.Credentials
	c.info.MemoryLimitBytes = uint64(res.MemoryMB+inst.MemoryOverheadMB) << 20
	limit := c.info.MemoryLimitBytes
	s.mu.Unlock()

	spec := ContainerSpec{
		GUID: guid, Path: req.Process.Path, Args: req.Process.Args,
		Env: slices.Concat(imageCfg.Env, instanceEnv(inst), req.Process.Env, inst.Env),
		Dir: req.Process.Dir, User: user,
		MemoryLimitBytes: limit, MaxPids: s.maxPids(res), CPUShares: cpuShares(req.CPUWeight),
		NetNSPath: inst.NetNSPath, Hostname: hostname(guid), Mounts: inst.Mounts,
		LogPath: s.logPath(guid), LogMaxBytes: s.cfg.LogMaxBytes, Init: inst.Init,
	}
	if err := s.deps.Runtime.Create(ctx, logger, spec); err != nil {
		return nil, err
	}
	if err := s.advance(c, executor.StateCreated); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start cancelled: %w", err) // stopped before the task existed
	}
	// The task's wait lives as long as the agent supervises, not the start.
	exits, err := s.deps.Tasks.Start(s.rootCtx, logger, guid)
	if err != nil {
		return nil, err
	}
	for _, h := range s.hooks {
		if st, ok := h.(Starter); ok {
			if err := st.Start(ctx, logger, inst); err != nil {
				return s.exitOr(exits, &failure{executor.FailureSetup, fmt.Errorf("%s: %w", h.Name(), err)})
			}
		}
	}
	if err := s.waitReady(ctx, logger, inst, exits, time.Duration(req.StartTimeout)); err != nil {
		return exits, err
	}
	s.publish(executor.EventContainerReady, guid, s.readyMessage(inst), nil)
	if err := s.advance(c, executor.StateRunning); err != nil {
		return exits, err
	}
	s.settleNotices(logger, c)
	s.route(logger, c)
	return exits, nil
}

// exitWait bounds how long a failed hook start waits for the app's exit.
// A process cannot be started beside an app that already exited
// (containerd: "cannot exec in a stopped state"); containerd has the exit
// by then and delivers it within milliseconds.
const exitWait = time.Second

// exitOr answers the app's exit instead of err when the app has exited:
// an app that exits at once makes starting its proxy fail, and the
// operator needs the app's status, not the proxy's complaint.
func (s *Store) exitOr(exits <-chan Exit, err error) (<-chan Exit, error) {
	select {
	case ex := <-exits:
		return exits, &exitError{exit: ex}
	case <-s.deps.Clock.After(exitWait):
		return exits, err
	}
}

// advance moves c to state, persists and publishes.
func (s *Store) advance(c *container, state executor.State) error {
	s.mu.Lock()
	if err := s.transitionLocked(c, state); err != nil {
		s.mu.Unlock()
		return err
	}
	snap := s.viewLocked(c)
	s.mu.Unlock()
	s.save(c)
	s.publish(executor.EventContainerState, c.info.GUID, "state "+state.String(), &snap)
	return nil
}

func (s *Store) readyMessage(inst *Instance) string {
	msg := "ready"
	if len(s.readiness) > 0 && len(inst.ProxyPorts) > 0 {
		msg += ": proxy answers TLS"
	}
	if inst.Request.Check != nil {
		msg += ", app check passed"
	}
	return msg
}

func (s *Store) notifyStopping(logger lager.Logger, guid string) {
	for _, h := range s.hooks {
		if st, ok := h.(Starter); ok {
			st.Stopping(logger, guid)
		}
	}
}

// defaultHostNetwork fills what a host-mode (or missing) Network step left
// empty: the host's addresses, and each app port at the same host port.
// runSetup calls it right after the Network step.
func (s *Store) defaultHostNetwork(inst *Instance) {
	if inst.InternalIP == "" {
		inst.InternalIP = "127.0.0.1"
	}
	if inst.ExternalIP == "" {
		inst.ExternalIP = s.cfg.ExternalIP
	}
	if inst.Ports == nil {
		inst.Ports = []executor.PortMapping{}
		for _, p := range inst.Request.Ports {
			inst.Ports = append(inst.Ports, executor.PortMapping{ContainerPort: p, HostPort: p})
		}
	}
}

// waitReady polls the readiness hooks and the app's check until they pass,
// the task exits, ctx ends or timeout passes.
func (s *Store) waitReady(ctx context.Context, logger lager.Logger, inst *Instance, exits <-chan Exit, timeout time.Duration) error {
	timer := s.deps.Clock.NewTimer(timeout)
	defer timer.Stop()
	readyCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan error, 1)
	go func() { results <- s.pollReady(readyCtx, inst) }()
	select {
	case err := <-results:
		return err
	case ex := <-exits:
		return &exitError{exit: ex}
	case <-timer.C():
		cancel()
		last := <-results
		return &failure{executor.FailureStartTimeout, fmt.Errorf("start timeout: not ready within %s (%v)", timeout, last)}
	case <-ctx.Done():
		cancel()
		<-results
		return fmt.Errorf("start cancelled: %w", ctx.Err())
	}
}

// pollReady returns nil once everything is ready, or the last failure
// when ctx ends. It waits readyPoll between attempts.
func (s *Store) pollReady(ctx context.Context, inst *Instance) error {
	gate := s.openListenGate(inst)
	defer gate.close()
	return s.pollReadyGated(ctx, inst, gate)
}

func (s *Store) pollReadyGated(ctx context.Context, inst *Instance, gate *listenGate) error {
	start := s.deps.Clock.Now()
	for {
		err := gate.attempt(s.deps.Clock.Now(), inst, func() error { return s.readyOnce(ctx, inst) })
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-s.deps.Clock.After(readyPoll(s.deps.Clock.Since(start))):
		}
	}
}

// listenGateRecheck is how long the gate holds the check back at most:
// past it, one attempt connects although the probe sees no listener, so
// that a listener the lookup misses (one bound to a device with
// SO_BINDTODEVICE, which only a SYN's interface matches) delays an
// instance by this much, not to its start timeout.
const listenGateRecheck = time.Second

// listenGate holds the readiness attempts back while nothing listens on
// the app check's port in the instance's namespace (listenprobe: a
// netlink lookup, ~3 us, where a refused connect to the container is a
// SYN and a reset through the veth and a conntrack entry, ~40 us of CPU).
// It only holds back: the check itself still decides. A probe that cannot
// be opened or answer, or that said nothing listened where the check then
// passed, leaves the attempts to the check, as without it, and is logged.
type listenGate struct {
	logger  lager.Logger
	guid    string
	probe   *listenprobe.Probe
	ip      netip.Addr
	port    uint16
	checked time.Time // when an attempt last ran the check
}

// openListenGate answers the gate of inst's app check; an open gate (no
// probe) when there is no check, no namespace of its own (host network)
// or no IPv4 address to ask for.
func (s *Store) openListenGate(inst *Instance) *listenGate {
	g := &listenGate{logger: s.logger, guid: inst.GUID}
	check := inst.Request.Check
	ip, err := netip.ParseAddr(inst.InternalIP)
	if check == nil || inst.NetNSPath == "" || err != nil || !ip.Is4() {
		return g
	}
	if check.TCP != nil {
		g.port = check.TCP.Port
	} else {
		g.port = check.HTTP.Port
	}
	p, err := listenprobe.Open(inst.NetNSPath)
	if err != nil {
		s.logger.Info("listen-probe-unavailable", lager.Data{guidKey: inst.GUID, "error": err.Error()})
		return g
	}
	g.probe, g.ip, g.checked = p, ip, s.deps.Clock.Now()
	return g
}

// attempt runs check unless the probe finds no listener, which it answers
// as an error, except once per listenGateRecheck. A check that passes
// where the probe saw no listener ends the probe.
func (g *listenGate) attempt(now time.Time, inst *Instance, check func() error) error {
	if g.probe == nil {
		return check()
	}
	listening, err := g.probe.Listening(g.ip, g.port)
	if err != nil {
		g.logger.Info("listen-probe-failed", lager.Data{guidKey: g.guid, "error": err.Error()})
		g.close() // the check's connects decide from now on
		return check()
	}
	if !listening && now.Sub(g.checked) < listenGateRecheck {
		return fmt.Errorf("check on %s: nothing listens on port %d yet", inst.InternalIP, g.port)
	}
	g.checked = now
	err = check()
	if err == nil && !listening {
		g.logger.Info("listen-probe-disagrees", lager.Data{guidKey: g.guid, "port": g.port,
			"message": "the check passed where the probe saw no listener; the check decides alone from now on"})
		g.close()
	}
	return err
}

func (g *listenGate) close() {
	if g.probe != nil {
		g.probe.Close()
		g.probe = nil
	}
}

// readyPoll is the wait before the next readiness attempt, elapsed after
// the first (right after the task started): an eighth of elapsed, between
// 2 ms and 100 ms. The wait so adds at most an eighth to the time an
// instance takes to get ready, however quick it is, and the attempts grow
// with the logarithm of that time (~40 for 0.5 s), not linearly. The fixed
// 5, 10, 20, 20 ms... schedule before it found the demo app and its proxy,
// which answer ~20 ms after the task started, at +47 ms (p50, cellbench
// start one at a time, issue 16); this one at +20 ms. A failed attempt is
// a refused connect (tens of microseconds), since the app's own check goes
// first.
func readyPoll(elapsed time.Duration) time.Duration {
	return min(max(elapsed/8, 2*time.Millisecond), 100*time.Millisecond)
}

// readyOnce runs the app's check first: it is a plain connect or request,
// while the proxy's readiness is a full TLS handshake, not worth repeating
// while the app is not listening yet.
func (s *Store) readyOnce(ctx context.Context, inst *Instance) error {
	if err := runCheck(ctx, inst.InternalIP, inst.Request.Check); err != nil {
		return err
	}
	for _, r := range s.readiness {
		if err := r.Ready(ctx, s.logger, inst); err != nil {
			return err
		}
	}
	return nil
}

// aliveOnce is the health monitoring's check: the hooks' cheap liveness
// and the app's own check, unless a hook's liveness already covered it.
func (s *Store) aliveOnce(ctx context.Context, inst *Instance) error {
	check := inst.Request.Check
	for _, r := range s.readiness {
		if err := r.Alive(ctx, s.logger, inst); err != nil {
			return err
		}
		if c, ok := r.(CheckCovering); ok && check != nil && c.CoversCheck(inst, check) {
			check = nil
		}
	}
	return runCheck(ctx, inst.InternalIP, check)
}

func runCheck(ctx context.Context, ip string, check *executor.Check) error {
	if check == nil {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if check.TCP != nil {
		addr := net.JoinHostPort(ip, strconv.Itoa(int(check.TCP.Port)))
		conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("tcp check on %s: %w", addr, err)
		}
		return conn.Close()
	}
	// The target is the instance's own address, whatever the path says
	// (validated again here: records written before the rule existed).
	target, err := executor.ParseCheckPath(check.HTTP.Path)
	if err != nil {
		return fmt.Errorf("http check: %w", err)
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(int(check.HTTP.Port)))
	url := "http://" + addr + target.RequestURI()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("http check on %s: %w", url, err)
	}
	defer conn.Close()
	deadline, _ := dctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if err := cellinit.HTTPStatus(conn, addr, target.RequestURI(), "cellagent"); err != nil {
		return fmt.Errorf("http check on %s: %w", url, err)
	}
	return nil
}

// cpuShares maps cpu_weight (1-100, Diego's scale) to cgroup v1 shares.
func cpuShares(weight int) uint64 {
	if weight <= 0 {
		return 0
	}
	shares := uint64(weight) * 1024 / 100
	if shares < 2 {
		shares = 2
	}
	return shares
}

func hostname(guid string) string {
	if len(guid) > 63 {
		return guid[:63]
	}
	return guid
}

// removeLogs removes the container's log directory.
func (s *Store) removeLogs(guid string) error {
	return os.RemoveAll(filepath.Dir(s.logPath(guid)))
}
