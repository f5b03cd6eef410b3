package containerstore

import (
	"context"
	"fmt"
	"time"

	"github.com/cellagent/cellagent/executor"
)

// Explain answers guid's timeline and, when it is not routable, the
// concrete blocker, found by running its readiness checks and the
// verified handshake once now.
func (s *Store) Explain(ctx context.Context, guid string) (executor.Explanation, error) {
	c, err := s.lookup(guid)
	if err != nil {
		return executor.Explanation{}, err
	}
	s.mu.Lock()
	v, inst, stopping, reserved := s.viewLocked(c), c.inst, c.stopping, c.reserved
	s.mu.Unlock()
	timeline, complete := s.events.forGUID(guid)
	e := executor.Explanation{GUID: guid, State: v.State, Routable: v.Routable, Timeline: timeline, TimelineComplete: complete,
		Tags: v.Tags}
	if e.Timeline == nil {
		e.Timeline = []executor.Event{}
	}
	if v.Routable {
		return e, nil
	}
	switch {
	case v.State == executor.StateReserved:
		left := s.cfg.ReservedExpiration - s.deps.Clock.Since(reserved)
		e.Blocker = fmt.Sprintf("reserved but not run yet (the reservation expires in %s)", left.Round(time.Second))
	case v.State == executor.StateCompleted && v.RunResult.Failed:
		e.Blocker = "completed: " + v.RunResult.FailureReason
		e.FailureCode = v.RunResult.FailureCode
	case v.State == executor.StateCompleted:
		e.Blocker = "completed: stopped"
	case stopping:
		e.Blocker = "stopping"
	case inst == nil:
		e.Blocker = "initializing: " + lastMessage(timeline)
	default:
		e.Blocker = s.blocker(ctx, inst, v.State)
	}
	return e, nil
}

// blocker runs the readiness checks and the verifiers once.
func (s *Store) blocker(ctx context.Context, inst *Instance, state executor.State) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := s.readyOnce(ctx, inst); err != nil {
		if state != executor.StateRunning {
			return fmt.Sprintf("%s, waiting for readiness: %v", state, err)
		}
		return err.Error()
	}
	if state != executor.StateRunning {
		return fmt.Sprintf("%s: ready, becoming running", state)
	}
	for _, h := range s.hooks {
		if v, ok := h.(Verifier); ok {
			if err := v.Verify(ctx, s.logger, inst); err != nil {
				return err.Error()
			}
		}
	}
	return "ready and verified now; it becomes routable at the next health check"
}

func lastMessage(evs []executor.Event) string {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Message != "" {
			return evs[i].Message
		}
	}
	return "no events yet"
}
