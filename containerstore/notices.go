package containerstore

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
)

// Notice is news about one instance from a part that runs beside the
// store: the proxy's supervisor and rotations (proxyhook), the credential
// manager (internal/adapters). A part sends it to a Notifier (the store's
// Inbox); the store hands it to the instance's lifecycle goroutine, the
// one writer of what it changes, which applies notices in the order sent.
// A Failed notice is the one exception: it stops the instance at once,
// even mid-start, as a Stop does (see Inbox). The types below are all the
// kinds there are.
type Notice interface{ noticeGUID() string }

// ProxyExited: the instance's proxy exited; its routes are withdrawn.
type ProxyExited struct{ GUID string }

// ProxyRestarting: the proxy will be started again (Message, published as
// proxy_restarted, says when).
type ProxyRestarting struct{ GUID, Message string }

// ProxyServing: a restarted proxy answers again; a running instance is
// verified and routed again.
type ProxyServing struct{ GUID string }

// Liveness: the instance's liveness checks, run outside the store (by
// cellinit in the container), changed their answer: Err is why they fail,
// empty when they pass again. The store unroutes or routes the instance as
// its own health check's answer would (checkHealth).
type Liveness struct{ GUID, Err string }

// Failed: the instance cannot go on (its proxy keeps failing, its
// certificate expired): it is stopped and completes failed with Code and
// Reason, unless its app exited by itself first.
type Failed struct {
	GUID   string
	Code   executor.FailureCode
	Reason string
}

// CredentialsRotated: the instance has a new certificate (Get shows it,
// credentials_rotated publishes it).
type CredentialsRotated struct {
	GUID string
	Info executor.CredentialInfo
}

// Note is an event about the instance published as is (Type
// rotation_unconfirmed, credentials_failed, drain_unconfirmed): it changes
// no state.
type Note struct{ GUID, Type, Message string }

func (n ProxyExited) noticeGUID() string        { return n.GUID }
func (n ProxyRestarting) noticeGUID() string    { return n.GUID }
func (n ProxyServing) noticeGUID() string       { return n.GUID }
func (n Liveness) noticeGUID() string           { return n.GUID }
func (n Failed) noticeGUID() string             { return n.GUID }
func (n CredentialsRotated) noticeGUID() string { return n.GUID }
func (n Note) noticeGUID() string               { return n.GUID }

// Notifier takes notices for the store.
type Notifier interface{ Send(Notice) }

// Inbox is the store's mailbox for notices. cmd/cellagent makes it before
// the store and before the parts that send to it, which get it in their
// configuration (the store in Deps.Inbox): no sender holds the store, and
// nothing is connected after construction. Send never blocks and keeps
// order; the store takes what came in its Run loop and hands each notice
// to its instance's lifecycle goroutine (each container has an Inbox of
// its own for that), or applies it itself when the instance has no
// lifecycle goroutine (not started yet, or completed).
type Inbox struct {
	mu    sync.Mutex
	queue []Notice
	wake  chan struct{} // holds a token while queue may be non-empty
}

// NewInbox makes an empty inbox.
func NewInbox() *Inbox { return &Inbox{wake: make(chan struct{}, 1)} }

// Send queues n.
func (b *Inbox) Send(n Notice) {
	b.mu.Lock()
	b.queue = append(b.queue, n)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// ready is readable when notices may be waiting (nil inbox: never).
func (b *Inbox) ready() <-chan struct{} {
	if b == nil {
		return nil
	}
	return b.wake
}

// take answers the queued notices, oldest first, and empties the queue.
func (b *Inbox) take() []Notice {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queue
	b.queue = nil
	return q
}

// dispatch hands n to its instance's lifecycle goroutine (Store.run).
func (s *Store) dispatch(n Notice) {
	guid := n.noticeGUID()
	s.mu.Lock()
	c, ok := s.containers[guid]
	if !ok || c.deleted {
		s.mu.Unlock()
		return
	}
	if f, ok := n.(Failed); ok {
		s.mu.Unlock()
		s.fail(c, f.Code, f.Reason)
		return
	}
	if c.owned {
		c.notices.Send(n)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.apply(s.logger, c, n, false)
}

// own marks c's lifecycle goroutine as started: notices go to it. Call it
// under s.mu, before the goroutine starts; the goroutine defers disown.
func (c *container) own() { c.owned = true }

// disown ends c's lifecycle goroutine's ownership and applies what it
// left (a notice handed to it after its last look).
//
// While it applies them c stays owned, so a newer notice queues behind
// them instead of overtaking them (an older CredentialsRotated would
// otherwise overwrite a newer one); ownership ends once the queue is seen
// empty under s.mu, which dispatch also holds.
func (s *Store) disown(logger lager.Logger, c *container) {
	for {
		s.mu.Lock()
		rest := c.notices.take()
		if len(rest) == 0 {
			c.owned = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		for _, n := range rest {
			s.apply(logger, c, n, false)
		}
	}
}

// applyNotices applies what c's inbox holds; c's lifecycle goroutine
// calls it.
func (s *Store) applyNotices(logger lager.Logger, c *container) {
	for _, n := range c.notices.take() {
		s.apply(logger, c, n, true)
	}
}

// settleNotices applies what c's inbox holds right before the lifecycle
// goroutine's first route (after a start or an adoption), leaving out the
// proxy's exits and returns to service: that route verifies the proxy as it
// serves now, so they are news it already has. Applied after it, a proxy
// exit queued while a slow app started would unroute an instance just
// verified (the notice that it serves again may never come: the proxy's
// supervisor stops waiting for it), and a return to service would
// unregister and verify it a second time. Liveness answers are news that
// route also has, though not from Verify: a start's readiness check passed
// after them, and an adoption's first route asks the checks' last report
// (LivenessReporter), which its sender records before it sends the notice.
func (s *Store) settleNotices(logger lager.Logger, c *container) {
	for _, n := range c.notices.take() {
		switch n.(type) {
		case ProxyExited, ProxyServing, Liveness:
			logger.Debug("notice-settled-by-route", lager.Data{"notice": fmt.Sprintf("%T", n)})
		default:
			s.apply(logger, c, n, true)
		}
	}
}

// apply makes n take effect on c. owner says the caller is c's lifecycle
// goroutine: only it routes or unroutes (an instance without one has no
// routes to change: they were withdrawn when it ended, or never made).
func (s *Store) apply(logger lager.Logger, c *container, n Notice, owner bool) {
	guid := c.info.GUID
	switch n := n.(type) {
	case ProxyExited:
		s.mu.Lock()
		was := c.info.Routable
		s.mu.Unlock()
		if owner && was {
			s.unroute(logger.Session("unroute", lager.Data{"reason": "proxy exited"}), c)
		}
	case ProxyServing:
		s.mu.Lock()
		running := c.info.State == executor.StateRunning && !c.info.Routable && !c.stopping
		s.mu.Unlock()
		if owner && running {
			s.servingRoute(logger.Session("reroute"), c)
		}
	case Liveness:
		if owner {
			var err error
			if n.Err != "" {
				err = errors.New(n.Err)
			}
			s.healthAnswer(logger, c, err)
		}
	case ProxyRestarting:
		s.publish(executor.EventProxyRestarted, guid, n.Message, nil)
	case Note:
		s.publish(n.Type, guid, n.Message, nil)
	case CredentialsRotated:
		// The record is not rewritten for it (a synced file replace per
		// rotation): recovery takes the credentials from the credentials
		// step's Restore, which reads them back from their own directory.
		s.mu.Lock()
		if c.deleted {
			s.mu.Unlock()
			return
		}
		info := n.Info
		c.info.Credentials = &info
		c.info.UpdatedAt = s.deps.Clock.Now()
		s.mu.Unlock()
		s.publish(executor.EventCredentialsRotated, guid, "serial "+info.Serial, nil)
	case Failed:
		s.fail(c, n.Code, n.Reason)
	}
}

// fail stops c and completes it failed with code and reason. It returns
// at once; the stop runs on a goroutine the store owns, under opMu as a
// Stop does.
func (s *Store) fail(c *container, code executor.FailureCode, reason string) {
	if s.rootCtx.Err() != nil {
		return // the agent stopped supervising: it signals nothing
	}
	guid := c.info.GUID
	s.mu.Lock()
	if c.appExited || c.deleted {
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
