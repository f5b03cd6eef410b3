package containerstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
)

// Recover rebuilds the store after an agent restart: running containers
// are adopted, containers whose task is gone are completed with a reason,
// and everything this agent owns but has no record of is removed. No
// running task is signalled.
func (s *Store) Recover(logger lager.Logger) error {
	logger = logger.Session("recover")
	ctx := s.rootCtx
	var runtimeList []RuntimeContainer
	var err error
	for attempt := 0; ; attempt++ {
		if runtimeList, err = s.deps.Runtime.List(ctx); err == nil {
			break
		}
		if attempt >= 30 {
			return fmt.Errorf("list containers in containerd: %w", err)
		}
		logger.Info("waiting-for-containerd", lager.Data{errorKey: err.Error()})
		select {
		case <-s.deps.Clock.After(time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	inRuntime := map[string]RuntimeContainer{}
	for _, rc := range runtimeList {
		inRuntime[rc.GUID] = rc
	}
	records, bad, err := s.readRecords()
	if err != nil {
		return fmt.Errorf("read records: %w", err)
	}
	for _, name := range bad {
		logger.Info("removing-unreadable-record", lager.Data{"file": name})
		_ = os.Remove(filepath.Join(s.cfg.DataDir, "containers", name))
	}

	adopted, completed := 0, 0
	type adoption struct {
		c   *container
		rec record
	}
	var toAdopt []adoption
	for guid, rec := range records {
		rc, inRT := inRuntime[guid]
		if rec.Container.State == executor.StateReserved {
			_ = s.removeRecord(guid)
			continue
		}
		c := s.restoreContainer(rec)
		switch {
		case rec.Container.State == executor.StateCompleted:
			completed++
		case inRT && rc.Status == TaskRunning && (rec.Container.State == executor.StateRunning || rec.Container.State == executor.StateCreated):
			toAdopt = append(toAdopt, adoption{c, rec})
			continue
		case inRT && rc.Status == TaskStopped:
			status := int(rc.ExitStatus)
			s.markCompleted(c, executor.RunResult{Failed: true, ExitStatus: &status, FailureCode: executor.FailureAppExited,
				FailureReason: fmt.Sprintf("app exited with status %d while the agent was down", rc.ExitStatus)})
			completed++
		case inRT:
			s.markCompleted(c, executor.RunResult{Failed: true, Retryable: true, FailureCode: executor.FailureAgentRestart,
				FailureReason: fmt.Sprintf("agent restarted while the container was %s (task %s)", rec.Container.State, rc.Status)})
			completed++
		default:
			s.markCompleted(c, executor.RunResult{Failed: true, Retryable: true, FailureCode: executor.FailureAgentRestart,
				FailureReason: "missing runtime container after agent restart"})
			completed++
		}
		close(c.exited)
		close(c.done)
	}

	// Adoption is mostly waiting on containerd (attach) and the hooks
	// (network restore, proxy re-attach): a few at a time, a 250-instance
	// cell is back in a fraction of the sequential time.
	var (
		adoptMu sync.Mutex
		wg      sync.WaitGroup
		sem     = make(chan struct{}, 8)
	)
	for _, a := range toAdopt {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := s.adopt(ctx, logger, a.c, a.rec)
			if err != nil {
				logger.Error("adopt-failed", err, lager.Data{guidKey: a.c.info.GUID})
				s.markCompleted(a.c, executor.RunResult{Failed: true, FailureCode: executor.FailureAgentRestart, FailureReason: "could not adopt after agent restart: " + err.Error()})
				close(a.c.exited)
				close(a.c.done)
			}
			adoptMu.Lock()
			defer adoptMu.Unlock()
			if err != nil {
				completed++
			} else {
				adopted++
			}
		}()
	}
	wg.Wait()

	orphans := 0
	for guid := range inRuntime {
		if _, ok := records[guid]; ok && s.known(guid) {
			continue
		}
		orphans++
		logger.Info("removing-orphan", lager.Data{guidKey: guid})
		if err := s.teardown(ctx, logger, guid); err != nil {
			logger.Error("orphan-teardown", err, lager.Data{guidKey: guid})
		}
		s.publish(executor.EventContainerOrphanGone, guid, "owned by this cell but unknown: removed", nil)
	}
	if sc, ok := s.deps.Runtime.(StrayShimCleaner); ok {
		// The tasks listed at the start that the store still holds: asking
		// containerd again would have it ask every shim for its state.
		hadTask := func(guid string) bool {
			rc, ok := inRuntime[guid]
			return ok && rc.Status != TaskNone && s.known(guid)
		}
		if err := sc.CleanupStrayShims(ctx, logger, hadTask); err != nil {
			logger.Error("cleanup-stray-shims", err)
		}
	}
	for _, h := range s.hooks {
		if oc, ok := h.(OrphanCleaner); ok {
			if err := oc.CleanupOrphans(ctx, logger, s.known); err != nil {
				logger.Error("cleanup-orphans", err, lager.Data{"hook": h.Name()})
			}
		}
	}
	s.removeUnknownLogs(logger)
	if rr, ok := s.deps.Pipeline.Routes.(RouteRecoverer); ok {
		// Keep only containers that may still serve: adopted ones
		// re-register themselves once verified.
		if err := rr.RecoverRoutes(logger, s.running); err != nil {
			logger.Error("recover-routes", err)
		}
	}
	logger.Info("done", lager.Data{"adopted": adopted, "completed": completed, "orphans-removed": orphans})
	return nil
}

func (s *Store) running(guid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[guid]
	return ok && (c.info.State == executor.StateRunning || c.info.State == executor.StateCreated)
}

func (s *Store) known(guid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.containers[guid]
	return ok
}

// restoreContainer puts a recorded container back, holding its resources
// (even beyond capacity: it exists whether or not it fits).
func (s *Store) restoreContainer(rec record) *container {
	res := rec.Container.Resources
	need := executor.ResourceTotals{MemoryMB: res.MemoryMB + rec.Overhead, DiskMB: res.DiskMB, Containers: 1}
	c := &container{info: rec.Container, request: rec.Request, user: rec.User, need: need, overheadMB: rec.Overhead,
		exited: make(chan struct{}), done: make(chan struct{}), notices: NewInbox()}
	c.info.Routable = false
	s.mu.Lock()
	s.containers[c.info.GUID] = c
	s.cap.used.MemoryMB += need.MemoryMB
	s.cap.used.DiskMB += need.DiskMB
	s.cap.used.Containers++
	s.presenceChangedLocked()
	s.mu.Unlock()
	return c
}

func (s *Store) markCompleted(c *container, result executor.RunResult) {
	s.mu.Lock()
	if c.info.State != executor.StateCompleted {
		_ = s.transitionLocked(c, executor.StateCompleted)
		c.info.RunResult = result
	}
	snap := s.viewLocked(c)
	s.mu.Unlock()
	s.save(c)
	s.publishCompleted(c.info.GUID, result.FailureReason, &snap)
}

// adopt re-attaches to a running task and restores the steps' results.
func (s *Store) adopt(ctx context.Context, logger lager.Logger, c *container, rec record) error {
	inst := &Instance{GUID: c.info.GUID, Request: rec.Request, User: rec.User, NetNSPath: rec.NetNSPath,
		InternalIP: rec.Container.InternalIP, ExternalIP: rec.Container.ExternalIP, Ports: rec.Container.Ports,
		Credentials: rec.Container.Credentials}
	if err := s.deps.Pipeline.runRestore(ctx, logger, inst); err != nil {
		return err
	}
	exits, err := s.deps.Tasks.Attach(s.rootCtx, logger, c.info.GUID)
	if err != nil {
		return err
	}
	for _, h := range s.hooks {
		if st, ok := h.(Starter); ok {
			if err := st.Adopt(ctx, logger, inst); err != nil {
				logger.Error("adopt-hook", err, lager.Data{"hook": h.Name(), guidKey: c.info.GUID})
			}
		}
	}
	startCtx, cancel := context.WithCancel(s.rootCtx)
	s.mu.Lock()
	c.inst = inst
	c.cancelStart = cancel
	c.own()
	c.info.Credentials = inst.Credentials
	wasRunning := c.info.State == executor.StateRunning
	snap := s.viewLocked(c)
	s.mu.Unlock()
	s.publish(executor.EventContainerAdopted, c.info.GUID, "adopted after agent restart", &snap)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(c.done)
		l := s.logger.Session("adopted", lager.Data{guidKey: c.info.GUID})
		defer s.disown(l, c)
		if !wasRunning {
			if err := s.waitReady(startCtx, l, inst, exits, time.Duration(rec.Request.StartTimeout)); err != nil {
				s.failStart(l, c, exits, err)
				return
			}
			if err := s.advance(c, executor.StateRunning); err != nil {
				l.Error("advance", err)
			}
		}
		s.settleNotices(l, c)
		if wasRunning {
			s.adoptedRoute(l, c)
		} else {
			s.route(l, c)
		}
		s.supervise(l, c, exits)
	}()
	return nil
}

// removeUnknownLogs removes log directories of containers the store does
// not know.
func (s *Store) removeUnknownLogs(logger lager.Logger) {
	entries, err := os.ReadDir(filepath.Join(s.cfg.DataDir, "logs"))
	if err != nil {
		return
	}
	for _, e := range entries {
		if !s.known(e.Name()) {
			logger.Info("removing-orphan-logs", lager.Data{guidKey: e.Name()})
			_ = os.RemoveAll(filepath.Join(s.cfg.DataDir, "logs", e.Name()))
		}
	}
}
