package cellinit

import (
	"time"

	"code.cloudfoundry.org/clock"

	"github.com/cellagent/cellagent/internal/backoff"
)

// restartPolicy is the proxy's restart decision, the agent supervisor's
// (proxyhook restartLoop): a proxy that ran for more than resetAfter
// starts counting again; every exit or failed start counts one failure;
// more than max in a row gives up. The delay is the project's backoff,
// doubling from 500ms to 16s (the supervisor waits it on a timer of its
// own, which a signal may cut short).
type restartPolicy struct {
	max        int
	resetAfter time.Duration
	failures   int
	delay      *backoff.Backoff
}

func newRestartPolicy(max int) *restartPolicy {
	return &restartPolicy{max: max, resetAfter: time.Minute,
		delay: backoff.New(clock.NewClock(), 500*time.Millisecond, 16*time.Second)}
}

// exited records an exit after the proxy ran for ranFor and answers the
// delay before the next start, or giveUp.
func (p *restartPolicy) exited(ranFor time.Duration) (delay time.Duration, giveUp bool) {
	if ranFor > p.resetAfter {
		p.failures = 0
		p.delay.Reset()
	}
	return p.failed()
}

// failed records a failed start (or an exit, via exited).
func (p *restartPolicy) failed() (delay time.Duration, giveUp bool) {
	p.failures++
	if p.failures > p.max {
		return 0, true
	}
	return p.delay.Next(), false
}
