package cellinit

import "time"

// restartPolicy is the proxy's restart decision, the agent supervisor's
// (proxyhook restartLoop): a proxy that ran for more than resetAfter
// starts counting again; every exit or failed start counts one failure;
// more than max in a row gives up. The delay doubles from initial to
// limit.
type restartPolicy struct {
	max            int
	initial, limit time.Duration
	resetAfter     time.Duration
	failures       int
	delay          time.Duration
}

func newRestartPolicy(max int) *restartPolicy {
	return &restartPolicy{max: max, initial: 500 * time.Millisecond, limit: 16 * time.Second,
		resetAfter: time.Minute, delay: 500 * time.Millisecond}
}

// exited records an exit after the proxy ran for ranFor and answers the
// delay before the next start, or giveUp.
func (p *restartPolicy) exited(ranFor time.Duration) (delay time.Duration, giveUp bool) {
	if ranFor > p.resetAfter {
		p.failures, p.delay = 0, p.initial
	}
	return p.failed()
}

// failed records a failed start (or an exit, via exited).
func (p *restartPolicy) failed() (delay time.Duration, giveUp bool) {
	p.failures++
	if p.failures > p.max {
		return 0, true
	}
	delay = p.delay
	p.delay = min(2*p.delay, p.limit)
	return delay, false
}
