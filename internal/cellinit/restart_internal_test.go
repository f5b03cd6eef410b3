package cellinit

import (
	"testing"
	"time"
)

func TestRestartPolicyDoublesGivesUpAndResetsAfterAMinuteUp(t *testing.T) {
	p := newRestartPolicy(3)
	var delays []time.Duration
	for range 3 {
		d, giveUp := p.exited(time.Second)
		if giveUp {
			t.Fatalf("gave up after %d exits", p.failures)
		}
		delays = append(delays, d)
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second}
	for i := range want {
		if delays[i] != want[i] {
			t.Fatalf("delays %v, want %v", delays, want)
		}
	}
	if _, giveUp := p.exited(time.Second); !giveUp {
		t.Fatal("a 4th quick exit with max 3 was restarted")
	}
	q := newRestartPolicy(3)
	q.exited(time.Second)
	q.failed()
	if d, giveUp := q.exited(2 * time.Minute); giveUp || d != 500*time.Millisecond || q.failures != 1 {
		t.Fatalf("after a minute up: delay %s giveUp %v failures %d; want a fresh count", d, giveUp, q.failures)
	}
	r := newRestartPolicy(0)
	for range 10 {
		r.exited(time.Second)
	}
	r = newRestartPolicy(100)
	for range 10 {
		r.exited(time.Second)
	}
	if d, _ := r.exited(time.Second); d != 16*time.Second {
		t.Fatalf("delay %s, want the 16s cap", d)
	}
}
