package proxyhook_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/credmanager"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/cellinit"
	"github.com/cellagent/cellagent/proxyhook"
)

func newInitFixture(t *testing.T, clk *fakeclock.FakeClock) *fixture {
	t.Helper()
	initBin := filepath.Join(t.TempDir(), "cellinit")
	if err := os.WriteFile(initBin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return newFixture(t, clk, func(c *proxyhook.Config) { c.InitBinary = initBin; c.StatePoll = time.Second })
}

// Issue 16: with an init binary the proxy is no runc exec: the instance's
// first process is cellinit, told how to run the proxy as today's exec did.
func TestWithAnInitTheProxyIsCellinitsChild(t *testing.T) {
	f := newInitFixture(t, fakeclock.NewFakeClock(time.Unix(1000, 0)))
	inst := f.instance(t, "g1", 10, 0)
	runDir := filepath.Join(f.cfg.DataDir, "logs", "g1")
	last := inst.Mounts[len(inst.Mounts)-2:]
	want := []containerstore.Mount{{Source: f.cfg.InitBinary, Destination: proxyhook.InitPath, ReadOnly: true},
		{Source: runDir, Destination: proxyhook.InitRunDir}}
	if fmt.Sprint(last) != fmt.Sprint(want) {
		t.Fatalf("mounts %v, want them to end with %v", inst.Mounts, want)
	}
	in := inst.Init
	if in == nil || in.Path != proxyhook.InitPath {
		t.Fatalf("init %+v", in)
	}
	c := in.Config
	if c.Proxy[0] != proxyhook.BinaryPath || *c.ProxyUser != (cellinit.Cred{UID: f.cfg.User.UID, GID: f.cfg.User.GID}) || !c.ProxyDropCaps ||
		c.ProxyNoFile == 0 || c.StateDir != proxyhook.InitRunDir || c.ProxyLog != proxyhook.InitRunDir+"/proxy.log" || c.MaxRestarts != f.cfg.MaxRestarts ||
		c.HealthInterval != 0 || len(c.HealthChecks) != 0 {
		t.Fatalf("init config %+v", c)
	}
	if st, err := cellinit.ReadState(runDir); err != nil || st.Seq != 0 {
		t.Fatalf("initial state %+v %v: want the marker an adopting agent reads", st, err)
	}
	if err := f.starter().Start(context.Background(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	f.starter().Stopping(f.logger, "g1")
	if f.runner.ExecCallCount() != 0 {
		t.Fatal("the proxy was started with a runc exec as well")
	}
}

// The supervisor follows cellinit's state file as it followed its exec's
// exit: unroute and an event per restart, reroute when the restarted
// proxy answers, fail the instance when cellinit gave up.
func TestTheInitsProxyExitsRestartsAndFailureReachTheStore(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	f := newInitFixture(t, clk)
	inst := f.instance(t, "g1", 10, 0) // no TLS ports: Ready passes at once
	runDir := filepath.Join(f.cfg.DataDir, "logs", "g1")
	write := func(st cellinit.ProxyState) {
		t.Helper()
		if err := cellinit.WriteState(runDir, st); err != nil {
			t.Fatal(err)
		}
	}
	write(cellinit.ProxyState{Seq: 1, Phase: cellinit.PhaseRunning, PID: 5})
	if err := f.starter().Start(context.Background(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	// The state watch wakes the supervisor; a tick stands for a poll where
	// inotify is missing. Not WaitForWatcher: a supervisor that saw the
	// final failed state has already returned with its poll timer.
	tick := func() { clk.Increment(time.Second) }
	// readiness steps the clock until the reroute's readiness poll ran
	// (the state poll timer is a watcher too, so waiting for one proves
	// nothing); bounded.
	readiness := func() {
		t.Helper()
		for range 500 {
			select {
			case c := <-f.sink.calls:
				if c != "reroute g1" {
					t.Fatalf("sink call %q, want the reroute", c)
				}
				return
			case <-time.After(10 * time.Millisecond):
				clk.Increment(200 * time.Millisecond)
			}
		}
		t.Fatal("no reroute")
	}
	write(cellinit.ProxyState{Seq: 2, Phase: cellinit.PhaseExited, Status: 1, Failures: 1, RestartInMS: 500})
	tick()
	f.sink.expect(t, "unroute g1", "publish proxy_restarted g1: proxy exited with status 1; restart 1 in 500ms")
	write(cellinit.ProxyState{Seq: 3, Phase: cellinit.PhaseRunning, PID: 9, Status: 1, Failures: 1})
	tick()
	readiness()
	// Exited and restarted between two polls: still an exit, with its
	// event.
	write(cellinit.ProxyState{Seq: 5, Phase: cellinit.PhaseRunning, PID: 11, Status: 2, Failures: 2})
	tick()
	f.sink.expect(t, "unroute g1", "publish proxy_restarted g1: proxy exited with status 2; restart 2 running")
	readiness()
	// A proxy that ran for over a minute starts counting again: the same
	// failure count, a new pid, missed exit and all.
	write(cellinit.ProxyState{Seq: 8, Phase: cellinit.PhaseRunning, PID: 12, Status: 4, Failures: 2})
	tick()
	f.sink.expect(t, "unroute g1", "publish proxy_restarted g1: proxy exited with status 4; restart 2 running")
	readiness()
	write(cellinit.ProxyState{Seq: 6, Phase: cellinit.PhaseFailed, Status: 7, Failures: 3})
	tick()
	f.sink.expect(t, "unroute g1", "fail g1 proxy_failed: instance proxy failed: exited 3 times in a row (last status 7)")
	f.starter().Stopping(f.logger, "g1") // the supervisor ended: returns at once
	f.sink.none(t)
}

// After an agent restart the proxy of a cellinit instance is followed
// through its state file: nothing is asked of containerd, nothing started.
func TestAdoptFollowsAnInitsProxyWithoutContainerd(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	f := newInitFixture(t, clk)
	inst := f.instance(t, "g1", 10, 0)
	adopted := &containerstore.Instance{GUID: "g1", Request: inst.Request, Ports: inst.Ports, InternalIP: inst.InternalIP}
	if err := cellinit.WriteState(filepath.Join(f.cfg.DataDir, "logs", "g1"), cellinit.ProxyState{Seq: 4, Phase: cellinit.PhaseFailed, Status: 3, Failures: 6}); err != nil {
		t.Fatal(err)
	}
	adopter := f.hook.FilesHook().(interface {
		Adopt(context.Context, lager.Logger, *containerstore.Instance) error
	})
	if err := adopter.Adopt(context.Background(), f.logger, adopted); err != nil {
		t.Fatal(err)
	}
	// Failed while the agent was away: the instance fails now.
	f.sink.expect(t, "unroute g1", "fail g1 proxy_failed: instance proxy failed: exited 6 times in a row (last status 3)")
	if f.runner.AttachExecCallCount()+f.runner.ExecCallCount() != 0 {
		t.Fatal("asked containerd for a proxy cellinit runs")
	}
	f.starter().Stopping(f.logger, "g1")
}

// Adopting a proxy that runs after earlier restarts is no exit: nothing
// is unrouted; its next restart is.
func TestAdoptingARunningInitProxyWithPastRestartsUnroutesNothing(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	f := newInitFixture(t, clk)
	inst := f.instance(t, "g1", 10, 0)
	runDir := filepath.Join(f.cfg.DataDir, "logs", "g1")
	if err := cellinit.WriteState(runDir, cellinit.ProxyState{Seq: 7, Phase: cellinit.PhaseRunning, PID: 9, Status: 1, Failures: 2}); err != nil {
		t.Fatal(err)
	}
	adopted := &containerstore.Instance{GUID: "g1", Request: inst.Request, Ports: inst.Ports, InternalIP: inst.InternalIP, Credentials: inst.Credentials}
	if err := (containerstore.Pipeline{Proxy: f.hook.FilesHook()}).Restore(context.Background(), f.logger, adopted); err != nil {
		t.Fatal(err)
	}
	if err := f.starter().Adopt(context.Background(), f.logger, adopted); err != nil {
		t.Fatal(err)
	}
	// Calls reach the sink in order: the exit's unroute coming first
	// below proves the adoption itself made none.
	if err := cellinit.WriteState(runDir, cellinit.ProxyState{Seq: 8, Phase: cellinit.PhaseExited, Status: 137, Failures: 3, RestartInMS: 2000}); err != nil {
		t.Fatal(err)
	}
	clk.WaitForWatcherAndIncrement(time.Second)
	f.sink.expect(t, "unroute g1", "publish proxy_restarted g1: proxy exited with status 137; restart 3 in 2s")
	f.starter().Stopping(f.logger, "g1")
}

// Issue 16 follow-up: an adopted instance whose checks cellinit runs
// answers their last report as soon as Adopt returns (the store's first
// route asks for it, ReportedLiveness), and every later change of that
// answer is a Liveness notice, also one written before the supervisor's
// first look of its own: the store, which may have seen the failing
// report, must hear that it passes again (with health_check_interval 0
// nothing else would route it).
func TestAnAdoptedInitInstanceReportsItsChecksWhenAdoptReturns(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	f := newInitFixture(t, clk)
	inst := f.instance(t, "g1", 10, 0)
	runDir := filepath.Join(f.cfg.DataDir, "logs", "g1")
	write := func(st cellinit.ProxyState) {
		t.Helper()
		if err := cellinit.WriteState(runDir, st); err != nil {
			t.Fatal(err)
		}
	}
	const sick = "http check on http://10.0.0.2:8080/: status 503"
	write(cellinit.ProxyState{Seq: 4, Phase: cellinit.PhaseRunning, PID: 9, HealthChecks: true, Unhealthy: sick})
	adopted := &containerstore.Instance{GUID: "g1", Request: inst.Request, Ports: inst.Ports, InternalIP: inst.InternalIP, Credentials: inst.Credentials}
	if err := (containerstore.Pipeline{Proxy: f.hook.FilesHook()}).Restore(context.Background(), f.logger, adopted); err != nil {
		t.Fatal(err)
	}
	reporter := f.hook.FilesHook().(containerstore.LivenessReporter)
	if err := reporter.ReportedLiveness(adopted); err != nil {
		t.Fatalf("ReportedLiveness before Adopt = %v, want none (nothing read yet)", err)
	}
	if err := f.starter().Adopt(context.Background(), f.logger, adopted); err != nil {
		t.Fatal(err)
	}
	defer f.starter().Stopping(f.logger, "g1")
	if err := reporter.ReportedLiveness(adopted); err == nil || err.Error() != sick {
		t.Fatalf("ReportedLiveness when Adopt returned = %v, want %q", err, sick)
	}
	write(cellinit.ProxyState{Seq: 5, Phase: cellinit.PhaseRunning, PID: 9, HealthChecks: true})
	for _, want := range []string{"liveness g1: " + sick, "liveness g1: "} {
		if got := f.sink.next(t); got != want {
			t.Fatalf("sink call %q, want %q", got, want)
		}
	}
	if err := reporter.ReportedLiveness(adopted); err != nil {
		t.Fatalf("ReportedLiveness after the passing report = %v", err)
	}
	f.sink.none(t)
}

// A proxy this agent started may be killed before the first poll saw it
// run: its first polled state, restarted, is an exit all the same.
func TestAStartedInitProxyRestartedBeforeTheFirstPollIsAnExit(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	f := newInitFixture(t, clk)
	inst := f.instance(t, "g1", 10, 0) // no TLS ports: Ready passes at once
	if err := cellinit.WriteState(filepath.Join(f.cfg.DataDir, "logs", "g1"), cellinit.ProxyState{Seq: 3, Phase: cellinit.PhaseRunning, PID: 9, Status: 137, Failures: 1}); err != nil {
		t.Fatal(err)
	}
	if err := f.starter().Start(context.Background(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	f.sink.expect(t, "unroute g1", "publish proxy_restarted g1: proxy exited with status 137; restart 1 running")
	for range 500 { // the reroute waits for readiness on the clock; bounded
		select {
		case c := <-f.sink.calls:
			if c != "reroute g1" {
				t.Fatalf("sink call %q, want the reroute", c)
			}
			f.starter().Stopping(f.logger, "g1")
			return
		case <-time.After(10 * time.Millisecond):
			clk.Increment(200 * time.Millisecond)
		}
	}
	t.Fatal("no reroute")
}

// The memory split finds cellinit's proxy among the container's processes
// by its pid in the container (the state file's); here the "container" is
// this test process, whose innermost pid is its own.
func TestUsageFindsTheInitsProxyInTheContainersCgroup(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	f := newInitFixture(t, clk)
	inst := f.instance(t, "g1", 10, 0)
	runDir := filepath.Join(f.cfg.DataDir, "logs", "g1")
	if err := cellinit.WriteState(runDir, cellinit.ProxyState{Seq: 1, Phase: cellinit.PhaseRunning, PID: os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	if err := f.starter().Start(context.Background(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	defer f.starter().Stopping(f.logger, "g1")
	procs := func(guid string) ([]uint32, error) { return []uint32{1, uint32(os.Getpid())}, nil }
	const total = 1 << 40
	if u := f.hook.Usage("g1", total, procs); u.ProxyBytes == 0 || u.AppBytes+u.ProxyBytes != total {
		t.Errorf("Usage = %+v, want the proxy's share found through the cgroup", u)
	}
	if err := cellinit.WriteState(runDir, cellinit.ProxyState{Seq: 2, Phase: cellinit.PhaseExited, Status: 1, Failures: 1}); err != nil {
		t.Fatal(err)
	}
	if u := f.hook.Usage("g1", total, procs); u.ProxyBytes != 0 {
		t.Errorf("Usage of an exited proxy = %+v, want none", u)
	}
}

// A root app keeps the proxy's runc exec: cellinit's directory is mounted
// read-write and only its mode keeps a non-root app out.
func TestARootAppIsNotRunUnderTheInit(t *testing.T) {
	f := newInitFixture(t, fakeclock.NewFakeClock(time.Unix(1000, 0)))
	for i, u := range []containerstore.User{{UID: 0, GID: 0}, {UID: 2000, GID: 0}, {UID: 0, GID: 2000}} {
		guid := fmt.Sprintf("root%d", i)
		certPEM, keyPEM, _, serial := f.ca.leaf(t, guid, int64(20+i))
		inst := &containerstore.Instance{GUID: guid, Request: executor.RunRequest{Ports: []uint16{8080}}, User: u,
			CertPEM: certPEM, KeyPEM: keyPEM, Credentials: &executor.CredentialInfo{Serial: serial},
			InternalIP: "127.0.0.1", ExternalIP: "127.0.0.1"}
		p := containerstore.Pipeline{ProxyPorts: f.hook.PortsHook(), Proxy: f.hook.FilesHook()}
		if err := p.Setup(context.Background(), f.logger, inst); err != nil {
			t.Fatal(err)
		}
		if inst.Init != nil {
			t.Fatalf("user %+v: run under cellinit", u)
		}
		for _, m := range inst.Mounts {
			if m.Destination == proxyhook.InitRunDir || m.Destination == proxyhook.InitPath {
				t.Fatalf("user %+v: mount %+v", u, m)
			}
		}
		if _, err := os.Stat(filepath.Join(f.cfg.DataDir, "logs", guid, cellinit.StateFile)); err == nil {
			t.Fatalf("user %+v: a state file marks the instance as cellinit's for adoption", u)
		}
	}
}

// An init that exited with AppStartFailed and recorded why is a start
// failure; a 127 without that record is the app's own exit.
func TestStartErrorIsTheInitsRecordOfAnAppThatDidNotStart(t *testing.T) {
	f := newInitFixture(t, fakeclock.NewFakeClock(time.Unix(1000, 0)))
	f.instance(t, "g1", 10, 0)
	ex := f.hook.FilesHook().(containerstore.StartExplainer)
	if err := ex.StartError("g1", cellinit.AppStartFailed); err != nil {
		t.Fatalf("no app_error recorded: %v", err)
	}
	runDir := filepath.Join(f.cfg.DataDir, "logs", "g1")
	if err := cellinit.WriteState(runDir, cellinit.ProxyState{Seq: 1, AppError: "start /no/such/app: not found"}); err != nil {
		t.Fatal(err)
	}
	if err := ex.StartError("g1", 1); err != nil {
		t.Fatalf("status 1: %v", err)
	}
	err := ex.StartError("g1", cellinit.AppStartFailed)
	if err == nil || !strings.Contains(err.Error(), "g1") || !strings.Contains(err.Error(), "/no/such/app: not found") {
		t.Fatalf("start error %v", err)
	}
	if err := ex.StartError("other", cellinit.AppStartFailed); err != nil {
		t.Fatalf("an instance without cellinit: %v", err)
	}
}

// Issue 16 (idle CPU at 500 instances): a replaced state file wakes its
// supervisor through the hook's inotify watch; no poll is needed (the
// fake clock never moves here, and the fallback tick is 30 polls away).
func TestAReplacedStateFileIsSeenWithoutAPoll(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	f := newInitFixture(t, clk)
	inst := f.instance(t, "g1", 10, 0)
	runDir := filepath.Join(f.cfg.DataDir, "logs", "g1")
	if err := cellinit.WriteState(runDir, cellinit.ProxyState{Seq: 1, Phase: cellinit.PhaseRunning, PID: 5}); err != nil {
		t.Fatal(err)
	}
	if err := f.starter().Start(context.Background(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	clk.WaitForWatcherAndIncrement(0) // the supervisor runs, its watch made
	// The app's log in the same directory wakes nothing.
	if err := os.WriteFile(filepath.Join(runDir, "app.log"), []byte("hello\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	f.sink.none(t)
	if err := cellinit.WriteState(runDir, cellinit.ProxyState{Seq: 2, Phase: cellinit.PhaseExited, Status: 1, Failures: 1, RestartInMS: 500}); err != nil {
		t.Fatal(err)
	}
	f.sink.expect(t, "unroute g1", "publish proxy_restarted g1: proxy exited with status 1; restart 1 in 500ms")
	f.starter().Stopping(f.logger, "g1")
}

// Issue 16 (idle CPU at 500 instances): with health monitoring on, cellinit
// runs the instance's liveness checks in the container (the app's own
// check and the agent's ClientHello to each proxy port); the hook passes
// on changes of their answer and Alive answers the last one without a
// connection of its own.
func TestWithHealthMonitoringTheInitChecksAndAliveAnswersItsReport(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	initBin := filepath.Join(t.TempDir(), "cellinit")
	if err := os.WriteFile(initBin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, clk, func(c *proxyhook.Config) {
		c.InitBinary, c.StatePoll, c.HealthInterval, c.UpstreamBeforeHandshake = initBin, time.Second, 30*time.Second, true
	})
	proxyPort := closedPort(t) // Alive would fail had it dialled
	certPEM, keyPEM, _, serial := f.ca.leaf(t, "g1", 10)
	check := &executor.Check{HTTP: &executor.HTTPCheck{Port: 8080, Path: "/health?deep=1"}}
	inst := &containerstore.Instance{GUID: "g1", Request: executor.RunRequest{Ports: []uint16{8080}, Check: check},
		User: containerstore.User{UID: 2000, GID: 2000}, CertPEM: certPEM, KeyPEM: keyPEM, Credentials: &executor.CredentialInfo{Serial: serial},
		InternalIP: "10.0.0.2", ExternalIP: "127.0.0.1",
		Ports: []executor.PortMapping{{ContainerPort: 8080, HostPort: 40000, ContainerTLSProxyPort: proxyPort, HostTLSProxyPort: proxyPort}}}
	if err := (containerstore.Pipeline{ProxyPorts: f.hook.PortsHook(), Proxy: f.hook.FilesHook()}).Setup(context.Background(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	c := inst.Init.Config
	want := fmt.Sprintf("[http:10.0.0.2:8080/health?deep=1 tls:10.0.0.2:%d]", proxyPort)
	if c.HealthInterval != 30*time.Second || fmt.Sprint(c.HealthChecks) != want || c.HealthHello != proxyhook.InitRunDir+"/health-hello" {
		t.Fatalf("init health: every %s, checks %v, hello %q; want every 30s, checks %s", c.HealthInterval, c.HealthChecks, c.HealthHello, want)
	}
	c.App = []string{"/app/server"} // the store adds the app's command
	if _, err := cellinit.Parse(c.Args()); err != nil {
		t.Fatalf("cellinit refuses its command line: %v", err)
	}
	runDir := filepath.Join(f.cfg.DataDir, "logs", "g1")
	hello, err := os.ReadFile(filepath.Join(runDir, "health-hello"))
	if err != nil || len(hello) < 5 || hello[0] != 22 {
		t.Fatalf("ClientHello file %x (%v): want a TLS handshake record", hello, err)
	}

	write := func(st cellinit.ProxyState) {
		t.Helper()
		if err := cellinit.WriteState(runDir, st); err != nil {
			t.Fatal(err)
		}
	}
	write(cellinit.ProxyState{Seq: 1, Phase: cellinit.PhaseRunning, PID: 5, HealthChecks: true})
	if err := f.starter().Start(context.Background(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	defer f.starter().Stopping(f.logger, "g1")
	readiness := f.hook.FilesHook().(containerstore.Readiness)
	write(cellinit.ProxyState{Seq: 2, Phase: cellinit.PhaseRunning, PID: 5, HealthChecks: true, Unhealthy: "http check on http://10.0.0.2:8080/health?deep=1: status 503"})
	f.sink.expect(t, "liveness g1: http check on http://10.0.0.2:8080/health?deep=1: status 503")
	if err := readiness.Alive(context.Background(), f.logger, inst); err == nil || !strings.Contains(err.Error(), "status 503") {
		t.Fatalf("Alive = %v, want cellinit's report", err)
	}
	if !f.hook.FilesHook().(containerstore.CheckCovering).CoversCheck(inst, check) {
		t.Fatal("CoversCheck: the app's http check runs in cellinit")
	}
	write(cellinit.ProxyState{Seq: 3, Phase: cellinit.PhaseRunning, PID: 5, HealthChecks: true})
	f.sink.expect(t, "liveness g1: ")
	if err := readiness.Alive(context.Background(), f.logger, inst); err != nil {
		t.Fatalf("Alive = %v, want cellinit's passing report (no connection to the closed port)", err)
	}
	// The proxy exits before the checks ran again: Alive fails until
	// cellinit reports it running.
	write(cellinit.ProxyState{Seq: 4, Phase: cellinit.PhaseExited, Status: 1, Failures: 1, RestartInMS: 500, HealthChecks: true})
	f.sink.expect(t, "unroute g1", "publish proxy_restarted g1")
	if err := readiness.Alive(context.Background(), f.logger, inst); err == nil || !strings.Contains(err.Error(), "cellinit reports it exited") {
		t.Fatalf("Alive = %v while the proxy is down", err)
	}
	f.sink.none(t)
}

// Issue 16 (kill -9 restart at 500 instances): an adopted cellinit
// instance needs no Verify when its proxy was last confirmed to serve the
// serial it must serve, against the same CA, and cellinit reports it
// running and healthy; anything else verifies.
func TestAnAdoptedInitInstanceIsConfirmedByItsLastVerifiedSerial(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Now())
	f := newInitFixture(t, clk)
	_, _, served, _ := f.ca.leaf(t, "g1", 10)
	inst := f.instance(t, "g1", 10, tlsServer(t, served))
	runDir := filepath.Join(f.cfg.DataDir, "logs", "g1")
	write := func(st cellinit.ProxyState) {
		t.Helper()
		if err := cellinit.WriteState(runDir, st); err != nil {
			t.Fatal(err)
		}
	}
	write(cellinit.ProxyState{Seq: 1, Phase: cellinit.PhaseRunning, PID: 5})
	confirmer := f.hook.FilesHook().(containerstore.AdoptConfirmer)
	if confirmer.ConfirmedAtAdoption(inst) {
		t.Fatal("confirmed before any Verify")
	}
	if err := f.hook.FilesHook().(containerstore.Verifier).Verify(context.Background(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	if !confirmer.ConfirmedAtAdoption(inst) {
		t.Fatal("not confirmed after a Verify of the serial it serves")
	}
	write(cellinit.ProxyState{Seq: 2, Phase: cellinit.PhaseRunning, PID: 5, HealthChecks: true, Unhealthy: "tcp check on 10.0.0.2:8080: refused"})
	if confirmer.ConfirmedAtAdoption(inst) {
		t.Fatal("confirmed while cellinit reports it unhealthy")
	}
	write(cellinit.ProxyState{Seq: 3, Phase: cellinit.PhaseExited, Status: 1, Failures: 1})
	if confirmer.ConfirmedAtAdoption(inst) {
		t.Fatal("confirmed while its proxy is down")
	}
	write(cellinit.ProxyState{Seq: 4, Phase: cellinit.PhaseRunning, PID: 6, Failures: 1})
	if !confirmer.ConfirmedAtAdoption(inst) {
		t.Fatal("a restarted proxy serves the same files: still confirmed")
	}
	// The certificate in the SDS file expires within adoptExpiryMargin.
	clk.Increment(time.Hour - 30*time.Second)
	if confirmer.ConfirmedAtAdoption(inst) {
		t.Fatal("confirmed with a certificate about to expire")
	}
	clk.Increment(-time.Hour + 30*time.Second)

	// Another agent over the same data dir with another identity CA: its
	// Verify would not accept the chain, so nothing counts as confirmed.
	other := newFixture(t, clock.NewClock(), func(c *proxyhook.Config) {
		c.DataDir, c.InitBinary = f.cfg.DataDir, f.cfg.InitBinary
		c.CACertPEM = newCA(t).pem
	})
	adopted := &containerstore.Instance{GUID: "g1", Request: inst.Request, Ports: inst.Ports, InternalIP: inst.InternalIP, Credentials: inst.Credentials}
	if err := (containerstore.Pipeline{Proxy: other.hook.FilesHook()}).Restore(context.Background(), other.logger, adopted); err != nil {
		t.Fatal(err)
	}
	if other.hook.FilesHook().(containerstore.AdoptConfirmer).ConfirmedAtAdoption(adopted) {
		t.Fatal("confirmed against another CA")
	}
}

// A stop cut short (kill -9 during the drain) must not leave an adoption
// that skips Verify: the drain removes the confirmed serial before it
// writes the invalid certificate, and adoption also wants the SDS file's
// serial to be the one the instance must serve.
func TestADrainedInstanceIsNotConfirmedAtAdoption(t *testing.T) {
	f := newInitFixture(t, fakeclock.NewFakeClock(time.Now()))
	_, _, served, _ := f.ca.leaf(t, "g1", 10)
	inst := f.instance(t, "g1", 10, tlsServer(t, served))
	runDir := filepath.Join(f.cfg.DataDir, "logs", "g1")
	if err := cellinit.WriteState(runDir, cellinit.ProxyState{Seq: 1, Phase: cellinit.PhaseRunning, PID: 5}); err != nil {
		t.Fatal(err)
	}
	if err := f.hook.FilesHook().(containerstore.Verifier).Verify(context.Background(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	confirmer := f.hook.FilesHook().(containerstore.AdoptConfirmer)
	if !confirmer.ConfirmedAtAdoption(inst) {
		t.Fatal("not confirmed after a Verify")
	}
	record, err := os.ReadFile(filepath.Join(runDir, "confirmed-serial"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.starter().Start(context.Background(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	f.starter().Stopping(f.logger, "g1") // the test's server keeps the identity: unconfirmed drain
	f.sink.expect(t, "publish "+proxyhook.EventDrainUnconfirmed+" g1")
	if _, err := os.Stat(filepath.Join(runDir, "confirmed-serial")); !os.IsNotExist(err) {
		t.Fatalf("confirmed serial kept through the drain (stat: %v)", err)
	}
	if confirmer.ConfirmedAtAdoption(inst) {
		t.Fatal("confirmed after the drain")
	}
	// A record that survived (the remove failed): the SDS file's serial
	// is the drain's.
	if err := os.WriteFile(filepath.Join(runDir, "confirmed-serial"), record, 0o600); err != nil {
		t.Fatal(err)
	}
	if confirmer.ConfirmedAtAdoption(inst) {
		t.Fatal("confirmed while the SDS file holds the drain's certificate")
	}
}

// heldTLSServer serves cert on 127.0.0.1 but handshakes each connection
// only after it was announced on accepted and released.
func heldTLSServer(t *testing.T, cert tls.Certificate) (port uint16, accepted <-chan struct{}, release chan<- struct{}) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	acc, rel := make(chan struct{}, 10), make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			acc <- struct{}{}
			<-rel
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_ = tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}}).Handshake()
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return uint16(l.Addr().(*net.TCPAddr).Port), acc, rel
}

// A Verify records the serial it checked, and only when no rotation
// rewrote the SDS files since it began; a rotation removes the record
// before it writes.
func TestVerifyDoesNotRecordARotatedSerialItNeverChecked(t *testing.T) {
	f := newInitFixture(t, fakeclock.NewFakeClock(time.Now()))
	servedCert, servedKey, served, servedSerial := f.ca.leaf(t, "g1", 10)
	port, accepted, release := heldTLSServer(t, served)
	inst := f.instance(t, "g1", 10, port)
	runDir := filepath.Join(f.cfg.DataDir, "logs", "g1")
	if err := cellinit.WriteState(runDir, cellinit.ProxyState{Seq: 1, Phase: cellinit.PhaseRunning, PID: 5}); err != nil {
		t.Fatal(err)
	}
	confirmer := f.hook.FilesHook().(containerstore.AdoptConfirmer)
	// rotate rewrites the SDS files; the proxy is not supervised, so
	// nothing confirms it.
	rotate := func(certPEM, keyPEM []byte, serial string) {
		t.Helper()
		if err := f.hook.CredentialsRotated(f.logger, "g1", credmanager.Credential{CertPEM: certPEM, KeyPEM: keyPEM, Serial: serial}); err != nil {
			t.Fatal(err)
		}
	}
	verify := func(during func()) error {
		errs := make(chan error, 1)
		go func() {
			errs <- f.hook.FilesHook().(containerstore.Verifier).Verify(context.Background(), f.logger, inst)
		}()
		<-accepted // the Verify has read the serial it wants
		during()
		release <- struct{}{}
		return <-errs
	}

	// The Verify checks serial 10 while a rotation to 11 happens: it
	// succeeds, and records nothing (the proxy was never seen serving 11).
	newCert, newKey, _, newSerial := f.ca.leaf(t, "g1", 11)
	if err := verify(func() { rotate(newCert, newKey, newSerial) }); err != nil {
		t.Fatal(err)
	}
	if confirmer.ConfirmedAtAdoption(inst) {
		t.Fatal("confirmed a serial no Verify checked")
	}

	// Back to 10, verified: confirmed; the next rotation removes the
	// record before it writes.
	rotate(servedCert, servedKey, servedSerial)
	if err := verify(func() {}); err != nil {
		t.Fatal(err)
	}
	if !confirmer.ConfirmedAtAdoption(inst) {
		t.Fatal("not confirmed after a Verify")
	}
	rotate(newCert, newKey, newSerial)
	if _, err := os.Stat(filepath.Join(runDir, "confirmed-serial")); !os.IsNotExist(err) {
		t.Fatalf("confirmed serial kept through a rotation (stat: %v)", err)
	}
}
