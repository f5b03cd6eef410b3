package containerstore

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
)

// killWait bounds how long we wait for a SIGKILLed task to be reaped.
const killWait = 10 * time.Second

func (s *Store) Stop(ctx context.Context, guid string) error {
	c, err := s.lookup(guid)
	if err != nil {
		return err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	return s.stop(ctx, s.logger.Session("stop", lager.Data{guidKey: guid}), c)
}

// stop: routes off first, then SIGTERM, stop_grace, SIGKILL. Caller holds c.opMu.
func (s *Store) stop(ctx context.Context, logger lager.Logger, c *container) error {
	s.mu.Lock()
	if c.deleted {
		s.mu.Unlock()
		return executor.NewError(executor.ErrContainerNotFound, "container %s not found", c.info.GUID)
	}
	state := c.info.State
	switch state {
	case executor.StateCompleted:
		s.mu.Unlock()
		return nil
	case executor.StateReserved:
		_ = s.transitionLocked(c, executor.StateCompleted)
		c.info.RunResult = executor.RunResult{Stopped: true}
		snap := s.viewLocked(c)
		close(c.exited)
		close(c.done)
		s.mu.Unlock()
		s.publish(executor.EventContainerState, c.info.GUID, "", &snap)
		return nil
	}
	c.stopping = true
	cancel := c.cancelStart
	grace := time.Duration(c.request.StopGrace)
	s.mu.Unlock()

	logger.Info("starting", lager.Data{"state": state.String()})
	s.unroute(logger, c)
	if s.cfg.DrainWindow > 0 && state == executor.StateRunning {
		select {
		case <-s.deps.Clock.After(s.cfg.DrainWindow):
		case <-c.exited:
		}
	}
	s.notifyStopping(logger, c.info.GUID)
	if state != executor.StateRunning && cancel != nil {
		cancel() // a start in progress stops short of (or right after) starting the task
	}
	s.publish(executor.EventStopStep, c.info.GUID, "stop: routes unregistered", nil)
	s.mu.Lock()
	exited := c.appExited
	c.signalled = !exited
	s.mu.Unlock()
	if !exited { // an app that exited by itself needs no signal
		s.terminate(ctx, logger, c, grace)
	}
	select {
	case <-c.done:
	case <-s.deps.Clock.After(killWait + grace):
		return fmt.Errorf("stop %s: task did not exit after SIGKILL", c.info.GUID)
	case <-s.rootCtx.Done():
		return executor.NewError(executor.ErrUnavailable, "agent is shutting down")
	}
	logger.Info("stopped")
	return nil
}

// terminate sends SIGTERM, waits up to grace for the exit, then SIGKILL.
func (s *Store) terminate(ctx context.Context, logger lager.Logger, c *container, grace time.Duration) {
	if err := s.deps.Tasks.Signal(ctx, c.info.GUID, syscall.SIGTERM); err != nil && !errors.Is(err, executor.ErrContainerNotFound) {
		logger.Error("sigterm", err)
	}
	s.publish(executor.EventStopStep, c.info.GUID, "stop: SIGTERM sent, grace "+grace.String(), nil)
	timer := s.deps.Clock.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-c.exited:
	case <-c.done:
	case <-timer.C():
		logger.Info("grace-expired-sending-sigkill", lager.Data{"stop-grace": grace.String()})
		s.publish(executor.EventStopStep, c.info.GUID, "stop: grace expired, SIGKILL sent", nil)
		if err := s.deps.Tasks.Signal(ctx, c.info.GUID, syscall.SIGKILL); err != nil && !errors.Is(err, executor.ErrContainerNotFound) {
			logger.Error("sigkill", err)
		}
	}
}

func (s *Store) Delete(ctx context.Context, guid string) error {
	c, err := s.lookup(guid)
	if err != nil {
		return err
	}
	logger := s.logger.Session("delete", lager.Data{guidKey: guid})
	c.opMu.Lock()
	defer c.opMu.Unlock()

	s.mu.Lock()
	if c.deleted {
		s.mu.Unlock()
		return executor.NewError(executor.ErrContainerNotFound, "container %s not found", guid)
	}
	if c.info.State == executor.StateReserved {
		delete(s.containers, guid)
		s.cap.release(c.need)
		c.deleted = true
		s.presenceChangedLocked()
		s.mu.Unlock()
		s.publish(executor.EventContainerDeleted, guid, "", nil)
		return nil
	}
	s.mu.Unlock()

	if err := s.stop(ctx, logger, c); err != nil {
		return err
	}
	if err := s.teardown(ctx, logger, guid); err != nil {
		logger.Error("teardown", err)
		return fmt.Errorf("delete %s (retry the delete): %w", guid, err)
	}
	s.mu.Lock()
	delete(s.containers, guid)
	s.cap.release(c.need)
	c.deleted = true
	s.presenceChangedLocked()
	s.mu.Unlock()
	if err := s.removeRecord(guid); err != nil {
		logger.Error("remove-record", err)
	}
	s.publish(executor.EventContainerDeleted, guid, "", nil)
	logger.Info("deleted")
	return nil
}

// teardown removes everything made for guid: the runtime container, each
// hook's part (reverse order) and the logs. Every step runs; errors join.
func (s *Store) teardown(ctx context.Context, logger lager.Logger, guid string) error {
	var errs []error
	if err := s.deps.Runtime.Delete(ctx, logger, guid); err != nil {
		errs = append(errs, err)
		ctx = context.WithValue(ctx, processesMayRunKey{}, true)
	}
	for i := len(s.hooks) - 1; i >= 0; i-- {
		h := s.hooks[i]
		if err := h.Teardown(ctx, logger, guid); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", h.Name(), err))
		}
	}
	if err := s.removeLogs(guid); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
