// Package backoff is the one doubling retry delay of the project, on an
// injectable clock so tests drive it with a fake one.
package backoff

import (
	"time"

	"code.cloudfoundry.org/clock"
)

// Backoff is a delay that starts at Initial and doubles after each Wait,
// up to Max. It is not safe for concurrent use: each retry loop owns one.
type Backoff struct {
	initial, max time.Duration
	clock        clock.Clock
	current      time.Duration
}

// New answers a backoff from initial doubling up to limit (a limit below
// initial is taken as initial: a constant delay).
func New(clk clock.Clock, initial, limit time.Duration) *Backoff {
	return &Backoff{initial: initial, max: max(limit, initial), clock: clk, current: initial}
}

// Current is the delay the next Wait waits (for messages such as
// "retrying in 2s").
func (b *Backoff) Current() time.Duration { return b.current }

// Wait waits the current delay, then doubles it (up to the limit). It answers
// false, at once, when done is closed first (ctx.Done(), a stop channel).
func (b *Backoff) Wait(done <-chan struct{}) bool {
	select {
	case <-b.clock.After(b.current):
	case <-done:
		return false
	}
	b.current = min(2*b.current, b.max)
	return true
}

// Next answers the current delay and doubles it (up to the limit), for a
// loop that waits on a timer of its own (one that may also be cut short,
// as a retry that must not pass a deadline is).
func (b *Backoff) Next() time.Duration {
	d := b.current
	b.current = min(2*b.current, b.max)
	return d
}

// Reset starts again from the initial delay (the operation succeeded for
// long enough).
func (b *Backoff) Reset() { b.current = b.initial }
