// Package tickgrid puts periodic per-instance work on a shared grid of
// instants, so that the runtime wakes once per grid tick for every
// instance due then, not once per instance. With 500 instances each on its
// own phase, a 30 s period woke the agent 17 times a second, and every
// wake-up of an idle Go process also sets its sysmon thread polling for a
// while (issue 16: idle agent CPU at 500 instances).
package tickgrid

import "time"

// Next answers t rounded up to the next whole tick (t itself when it is on
// one); tick must be positive. The rounding is added to t, so the answer keeps t's monotonic clock
// reading: a timer set from it follows the monotonic clock, and a wall
// clock stepped back or forward neither stops nor bunches the rounds.
func Next(t time.Time, tick time.Duration) time.Time {
	if r := t.Truncate(tick); r.Before(t) {
		return t.Add(r.Add(tick).Sub(t))
	}
	return t
}

// After answers the round after next for a period: next plus period, or,
// when rounds were missed (the caller ran late), the first instant after
// now that is a whole number of periods after next, as a time.Ticker
// drops the ticks a slow reader missed. period must be positive (0 would
// answer now, a busy loop); rounds that start on the grid stay on it only
// when period is a whole number of ticks (30 s health rounds on a 1 s
// grid are; a 2.5 s interval keeps its own phase after the first round).
func After(next, now time.Time, period time.Duration) time.Time {
	next = next.Add(period)
	if late := now.Sub(next); late >= 0 {
		next = next.Add(late.Truncate(period) + period)
	}
	return next
}
