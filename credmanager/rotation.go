package credmanager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/internal/backoff"
)

// The rotation rule: a certificate is replaced at a uniformly random point
// between RotateFrom and RotateTo of its lifetime, counted from the moment
// of issue (NotBefore + Backdate) to NotAfter: counting from the backdated
// NotBefore would put the point in the past for short validities (30s) and
// rotate without pause,
// drawn anew for every certificate, as SPIRE, Istio and Consul do. Diego's
// fixed "validity - 30m" made every instance started together rotate
// together. The earliest point leaves half the lifetime for retries.
const (
	RotateFrom = 0.5
	RotateTo   = 0.7
	// A failed rotation is retried after MinBackoff, doubling up to
	// MaxBackoff, never later than the expiry deadline.
	MinBackoff = time.Second
	MaxBackoff = time.Minute
)

// instance is one tracked instance and its rotation loop.
type instance struct {
	id        Identity
	rotateNow bool // the first rotation is due at once (set before the loop starts)

	cancel context.CancelFunc // guarded by Manager.mu; set when the loop starts
	done   chan struct{}      // guarded by Manager.mu; closed when the loop returns
	cred   Credential         // guarded by Manager.mu; what is on disk
	next   time.Time          // guarded by Manager.mu; when the loop's timer fires
}

// rotationPoint is where in cred's lifetime a rotation is due, for u in
// [0,1), rounded up to a whole second (unless that reaches NotAfter):
// instances whose rotations fall in the same second are rotated together,
// on one wake-up of the agent, as its health checks are. Each wake-up of
// an idle agent has a cost of its own in the Go scheduler (threads woken,
// sysmon polling until the agent is idle again): in the perf profile of
// the rotation wave (issue 16) it was most of what the rotations' own
// work cost again.
func rotationPoint(cred Credential, u float64) time.Time {
	issued := cred.NotBefore.Add(Backdate)
	if !issued.Before(cred.NotAfter) {
		issued = cred.NotBefore
	}
	life := cred.NotAfter.Sub(issued)
	at := issued.Add(time.Duration(float64(life) * (RotateFrom + (RotateTo-RotateFrom)*u)))
	if whole := at.Truncate(time.Second); whole.Before(at) && whole.Add(time.Second).Before(cred.NotAfter) {
		at = whole.Add(time.Second)
	}
	return at
}

// newRetryBackoff is the delay between failed rotation attempts.
func newRetryBackoff(clk clock.Clock) *backoff.Backoff {
	return backoff.New(clk, MinBackoff, MaxBackoff)
}

// Track starts rotating id, whose current credential is cred (from Issue).
// Tracking a guid again replaces the earlier entry. Before Run the entry
// waits; after Run has stopped nothing rotates.
func (m *Manager) Track(logger lager.Logger, id Identity, cred Credential) error {
	if err := ValidateGUID(id.GUID); err != nil {
		return err
	}
	if !cred.NotBefore.Before(cred.NotAfter) {
		return fmt.Errorf("track %s: credential has no lifetime (not_before %s, not_after %s)", id.GUID, cred.NotBefore, cred.NotAfter)
	}
	m.track(id, cred, false)
	logger.Session("credmanager.track", lager.Data{guidKey: id.GUID}).Debug("tracking")
	return nil
}

func (m *Manager) track(id Identity, cred Credential, rotateNow bool) {
	m.Untrack(id.GUID)
	in := &instance{id: id, cred: cred, rotateNow: rotateNow}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tracked[id.GUID] = in
	if m.running {
		m.startLocked(in)
	}
}

func (m *Manager) startLocked(in *instance) {
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel, in.done = cancel, make(chan struct{})
	m.loops.Add(1)
	go func(done chan struct{}) {
		defer m.loops.Done()
		defer close(done)
		m.rotateLoop(ctx, in)
	}(in.done)
}

// Untrack stops rotating guid. A rotation in flight (handlers included) is
// finished before Untrack returns, so nothing writes guid's directory after.
func (m *Manager) Untrack(guid string) {
	m.mu.Lock()
	in := m.tracked[guid]
	delete(m.tracked, guid)
	var cancel context.CancelFunc
	var done chan struct{}
	if in != nil {
		cancel, done = in.cancel, in.done
	}
	m.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Run rotates every tracked instance until signalled, then stops the
// rotation loops (finishing rotations in flight) and returns. Credential
// directories stay: containers keep running across an agent restart.
func (m *Manager) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	m.mu.Lock()
	if m.ran {
		m.mu.Unlock()
		return errors.New("credmanager: Run called twice")
	}
	m.ran, m.running = true, true
	for _, in := range m.tracked {
		m.startLocked(in)
	}
	m.mu.Unlock()
	close(ready)

	<-signals

	m.mu.Lock()
	m.running = false
	for _, in := range m.tracked {
		if in.cancel != nil { // always set while running; checked for safety
			in.cancel()
		}
	}
	m.mu.Unlock()
	m.loops.Wait()
	return nil
}

// rotateLoop owns in's rotations: one at a time, at the rotation point, then
// with backoff until one succeeds or the last delivered certificate expires.
func (m *Manager) rotateLoop(ctx context.Context, in *instance) {
	guid := in.id.GUID
	logger := m.logger.Session("rotate", lager.Data{guidKey: guid})

	m.mu.Lock()
	cred := in.cred
	m.mu.Unlock()
	// delivered is the newest certificate that every handler took (so the
	// proxy serves it): its expiry is the deadline for rotating.
	delivered := cred
	next := rotationPoint(cred, m.jitter())
	if in.rotateNow {
		next = m.clock.Now()
	}
	retry := newRetryBackoff(m.clock)
	for {
		m.mu.Lock()
		in.next = next
		m.mu.Unlock()
		timer := m.clock.NewTimer(next.Sub(m.clock.Now()))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C():
		}
		if ctx.Err() != nil {
			return
		}

		started := m.clock.Now()
		newCred, err := m.renew(logger, in.id, cred.Rotations+1)
		if err == nil {
			cred = newCred
			m.mu.Lock()
			in.cred = cred
			m.mu.Unlock()
			logger.Info("rotated", lager.Data{"serial": cred.Serial, "not-after": cred.NotAfter, "rotations": cred.Rotations})
			if err = m.notify(logger, guid, cred); err != nil {
				err = fmt.Errorf("handlers: %w", err)
			}
		}
		if err == nil {
			delivered = cred
			retry.Reset()
			next = rotationPoint(cred, m.jitter())
			m.mu.Lock()
			observe := m.observeRotate
			m.mu.Unlock()
			if observe != nil {
				observe(m.clock.Since(started))
			}
			continue
		}

		now := m.clock.Now()
		if !now.Before(delivered.NotAfter) {
			logger.Error("expired", err, lager.Data{"serial": delivered.Serial, "not-after": delivered.NotAfter})
			m.expire(logger, in, delivered, err)
			return
		}
		next = now.Add(retry.Next())
		if next.After(delivered.NotAfter) {
			next = delivered.NotAfter
		}
		logger.Error("rotation-failed", err, lager.Data{"retry-at": next, "deadline": delivered.NotAfter})
		m.mu.Lock()
		fails := slices.Clone(m.failHandlers)
		m.mu.Unlock()
		for _, h := range fails {
			h.CredentialsRotationFailed(logger, guid, err, next)
		}
	}
}

// expire stops tracking in, then tells the expiry handlers (which may
// therefore Remove it).
func (m *Manager) expire(logger lager.Logger, in *instance, cred Credential, err error) {
	m.mu.Lock()
	if m.tracked[in.id.GUID] == in {
		delete(m.tracked, in.id.GUID)
	}
	handlers := slices.Clone(m.expiryHandlers)
	m.mu.Unlock()
	for _, h := range handlers {
		h.CredentialsExpired(logger, in.id.GUID, cred, err)
	}
}
