package proxyhook

import (
	"context"
	"errors"
	"fmt"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/backoff"
	"github.com/cellagent/cellagent/proxyconfig"
)

// supervisor restarts one container's proxy. stop is closed to end it;
// done is closed when its goroutine returned.
type supervisor struct {
	stop chan struct{}
	done chan struct{}
}

func (f filesHook) spec(inst *containerstore.Instance) containerstore.ProcessSpec {
	argv := proxyconfig.Command(binaryPath(f.h.cfg.HostBinary), f.h.cfg.Proxy)
	return containerstore.ProcessSpec{Path: argv[0], Args: argv[1:], User: f.h.cfg.User,
		NoCapabilities: true, NoFile: f.h.cfg.NoFile,
		LogPath: containerstore.LogPath(f.h.cfg.DataDir, inst.GUID, executor.LogSourceProxy), LogMaxBytes: f.h.cfg.LogMaxBytes}
}

// Start launches the proxy beside the app that just started. The exec's
// wait must outlive the start: it uses supervision's context (Hook.Run),
// and its goroutine ends when the proxy (or the whole container) exits or
// supervision ends.
func (f filesHook) Start(ctx context.Context, logger lager.Logger, inst *containerstore.Instance) error {
	if !proxied(inst) {
		return nil
	}
	if inst.Init != nil {
		f.superviseInit(inst.GUID, nil) // cellinit started it with the app
		return nil
	}
	pid, exits, err := f.h.runner.Exec(f.h.ctx, logger, inst.GUID, execID, f.spec(inst))
	if err != nil {
		return fmt.Errorf("start proxy: %w", err)
	}
	f.supervise(inst.GUID, pid, exits)
	return nil
}

// Adopt re-attaches to the proxy of an adopted container, or starts one.
func (f filesHook) Adopt(ctx context.Context, logger lager.Logger, inst *containerstore.Instance) error {
	if !proxied(inst) {
		return nil
	}
	if f.h.runByInit(inst.GUID) {
		f.superviseInit(inst.GUID, f.adoptInitState(inst.GUID))
		return nil
	}
	pid, exits, err := f.h.runner.AttachExec(f.h.ctx, logger, inst.GUID, execID)
	if err != nil {
		logger.Info("proxy-not-running-starting-it", lager.Data{guidKey: inst.GUID, "error": err.Error()})
		return f.Start(ctx, logger, inst)
	}
	f.supervise(inst.GUID, pid, exits)
	return nil
}

// Stopping ends supervision: the app is about to be signalled or gone. A
// proxy still running then presents an invalid certificate before the app
// gets SIGTERM (refuseNewHandshakes), as Diego's does during drain.
func (f filesHook) Stopping(logger lager.Logger, guid string) {
	f.h.mu.Lock()
	in, ok := f.h.instances[guid]
	var sup *supervisor
	first := false
	if ok {
		sup, in.sup = in.sup, nil
		first = !in.stopping
		in.stopping = true
	}
	f.h.mu.Unlock()
	if sup != nil {
		close(sup.stop)
		<-sup.done
	}
	if sup != nil && first {
		f.refuseNewHandshakes(logger, in)
	}
}

func (f filesHook) supervise(guid string, pid uint32, exits <-chan containerstore.Exit) {
	if sup := f.claimSupervisor(guid, pid); sup != nil {
		go f.restartLoop(guid, sup, exits)
	}
}

// claimSupervisor makes guid's supervisor (recording the proxy's pid) and
// answers it, or nil when guid is gone, already supervised, or the Hook's
// Run has ended. The caller starts its goroutine, which calls h.wg.Done
// when it returns.
func (f filesHook) claimSupervisor(guid string, pid uint32) *supervisor {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	in, ok := f.h.instances[guid]
	if !ok || in.sup != nil || f.h.closed {
		return nil
	}
	in.sup = &supervisor{stop: make(chan struct{}), done: make(chan struct{})}
	in.pid = pid
	f.h.wg.Add(1)
	return in.sup
}

// restartLoop waits for the proxy to exit and starts it again with
// backoff; after MaxRestarts quick failures in a row the instance fails.
func (f filesHook) restartLoop(guid string, sup *supervisor, exits <-chan containerstore.Exit) {
	defer f.h.wg.Done()
	defer close(sup.done)
	h := f.h
	logger := h.logger.Session("supervise", lager.Data{guidKey: guid})
	clk := h.cfg.Clock
	failures := 0
	retry := backoff.New(clk, 500*time.Millisecond, 16*time.Second)
	startedAt := clk.Now()
	for {
		var ex containerstore.Exit
		select {
		case ex = <-exits:
		case <-sup.stop:
			return
		}
		select {
		case <-sup.stop:
			return // the app is stopping: its proxy goes with it
		default:
		}
		if ex.Err != nil {
			// The wait itself failed (containerd restarted, agent shutting
			// down): the proxy may well be running. Re-attach when
			// containerd answers; restart only if the proxy is really gone.
			logger.Error("lost-proxy-wait", ex.Err)
			if next, ok := f.reattach(logger, guid, sup); ok {
				exits = next
				continue
			}
			select {
			case <-sup.stop:
				return
			default:
			}
			ex = containerstore.Exit{Status: 255}
		}
		if clk.Since(startedAt) > time.Minute {
			failures = 0
			retry.Reset()
		}
		failures++
		logger.Info("proxy-exited", lager.Data{"status": ex.Status, "failures": failures})
		h.notify(containerstore.ProxyExited{GUID: guid})
		if failures > h.cfg.MaxRestarts {
			h.notify(containerstore.Failed{GUID: guid, Code: executor.FailureProxyFailed,
				Reason: fmt.Sprintf("instance proxy failed: exited %d times in a row (last status %d)", failures, ex.Status)})
			return
		}
		h.notify(containerstore.ProxyRestarting{GUID: guid,
			Message: fmt.Sprintf("proxy exited with status %d; restart %d in %s", ex.Status, failures, retry.Current())})
		for {
			if !retry.Wait(sup.stop) {
				return
			}
			in, ok := f.instance(guid)
			if !ok {
				return
			}
			pid, next, err := h.runner.Exec(h.ctx, logger, guid, execID, f.spec(in.inst))
			if err == nil {
				h.mu.Lock()
				in.pid = pid
				h.mu.Unlock()
				exits, startedAt = next, clk.Now()
				break
			}
			logger.Error("restart-failed", err)
			failures++
			if failures > h.cfg.MaxRestarts {
				h.notify(containerstore.Failed{GUID: guid, Code: executor.FailureProxyFailed, Reason: "instance proxy failed: " + err.Error()})
				return
			}
		}
		f.rerouteWhenReady(guid, sup)
	}
}

// rerouteWhenReady waits until the restarted proxy answers, then tells
// the store (ProxyServing), which verifies and routes the instance again. An exit meanwhile waits in
// the exits channel (buffered) for the loop.
func (f filesHook) rerouteWhenReady(guid string, sup *supervisor) {
	in, ok := f.instance(guid)
	if !ok {
		return
	}
	deadline := f.h.cfg.Clock.Now().Add(30 * time.Second)
	for f.h.cfg.Clock.Now().Before(deadline) {
		select {
		case <-sup.stop:
			return
		case <-f.h.cfg.Clock.After(200 * time.Millisecond):
		}
		if err := f.Ready(f.h.ctx, f.h.logger, in.inst); err == nil {
			f.h.notify(containerstore.ProxyServing{GUID: guid})
			return
		}
	}
}

// reattach re-attaches to the proxy after a broken wait, retrying while
// containerd does not answer (bounded: 20 attempts, about two minutes). It
// answers false when the proxy process is gone or supervision stops.
func (f filesHook) reattach(logger lager.Logger, guid string, sup *supervisor) (<-chan containerstore.Exit, bool) {
	retry := backoff.New(f.h.cfg.Clock, 250*time.Millisecond, 8*time.Second)
	for range 20 {
		pid, exits, err := f.h.runner.AttachExec(f.h.ctx, logger, guid, execID)
		if err == nil {
			f.h.mu.Lock()
			if in, ok := f.h.instances[guid]; ok {
				in.pid = pid
			}
			f.h.mu.Unlock()
			return exits, true
		}
		if errors.Is(err, executor.ErrContainerNotFound) || errors.Is(err, containerstore.ErrProcessNotRunning) {
			return nil, false
		}
		if !retry.Wait(sup.stop) {
			return nil, false
		}
	}
	return nil, false
}
