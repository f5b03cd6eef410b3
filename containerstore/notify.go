package containerstore

import (
	"context"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
)

// UpdateCredentials records a rotated certificate and publishes an event.
// The record is not rewritten for it (a synced file replace per rotation):
// recovery takes the credentials from the credentials step's Restore,
// which reads them back from their own directory, not from the record.
func (s *Store) UpdateCredentials(guid string, info executor.CredentialInfo) {
	s.mu.Lock()
	c, ok := s.containers[guid]
	if !ok || c.deleted {
		s.mu.Unlock()
		return
	}
	c.info.Credentials = &info
	c.info.UpdatedAt = s.deps.Clock.Now()
	s.mu.Unlock()
	s.publish(executor.EventCredentialsRotated, guid, "serial "+info.Serial, nil)
}

// Publish puts an event about guid on the stream (for hooks).
func (s *Store) Publish(typ, guid, msg string) { s.publish(typ, guid, msg, nil) }

// Fail stops guid and completes it failed with code and reason. It
// returns at once; the stop runs on a goroutine the store owns.
func (s *Store) Fail(guid string, code executor.FailureCode, reason string) {
	if s.rootCtx.Err() != nil {
		return // the agent stopped supervising: it signals nothing
	}
	c, err := s.lookup(guid)
	if err != nil {
		return
	}
	s.mu.Lock()
	if c.appExited {
		s.mu.Unlock()
		return // the app's own exit decides its result
	}
	if c.failReason == "" {
		c.failReason, c.failCode = reason, code
	}
	s.mu.Unlock()
	s.events.publish(executor.Event{Type: executor.EventContainerState, GUID: guid, Time: s.deps.Clock.Now(),
		Message: "failing: " + reason, FailureCode: code})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		logger := s.logger.Session("fail", lager.Data{guidKey: guid})
		c.opMu.Lock()
		defer c.opMu.Unlock()
		if err := s.stop(context.Background(), logger, c); err != nil {
			logger.Error("stop", err)
		}
	}()
}

// Unroute withdraws guid's routes (e.g. its proxy died) without stopping it.
func (s *Store) Unroute(guid, reason string) {
	c, err := s.lookup(guid)
	if err != nil {
		return
	}
	logger := s.logger.Session("unroute", lager.Data{guidKey: guid, "reason": reason})
	s.mu.Lock()
	was := c.info.Routable
	s.mu.Unlock()
	if was {
		s.unroute(logger, c)
	}
}

// Reroute verifies guid again and makes it routable when it is running.
func (s *Store) Reroute(guid string) {
	c, err := s.lookup(guid)
	if err != nil {
		return
	}
	s.mu.Lock()
	running := c.info.State == executor.StateRunning && !c.info.Routable && !c.stopping
	s.mu.Unlock()
	if running {
		s.route(s.logger.Session("reroute", lager.Data{guidKey: guid}), c)
	}
}
