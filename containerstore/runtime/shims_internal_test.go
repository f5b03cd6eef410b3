package runtime

import (
	"os"
	"testing"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
)

// driveWaitGone runs waitGone on a fake clock, moving the clock on by
// 20ms each time it sleeps, and answers its result and the clock times at
// which it looked for pid 1.
func driveWaitGone(t *testing.T, alive func(now time.Time, pid int) bool, timeout time.Duration) (bool, []time.Duration) {
	t.Helper()
	start := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	clk := fakeclock.NewFakeClock(start)
	looks := make(chan time.Duration, 1000)
	done := make(chan bool, 1)
	go func() {
		done <- waitGone(clk, func(pid int) bool {
			if pid == 1 {
				looks <- clk.Now().Sub(start)
			}
			return alive(clk.Now(), pid)
		}, []int{1, 2}, timeout)
	}()
	for steps := 0; ; {
		select {
		case gone := <-done:
			close(looks)
			var at []time.Duration
			for d := range looks {
				at = append(at, d)
			}
			return gone, at
		default:
		}
		if clk.WatcherCount() == 0 {
			time.Sleep(100 * time.Microsecond) // waitGone is looking, not sleeping yet
			continue
		}
		if steps++; steps > 500 {
			t.Fatal("waitGone still sleeping after 500 steps of 20ms")
		}
		clk.Increment(20 * time.Millisecond)
	}
}

func TestWaitGoneLooksEvery20msOnItsClockUntilEveryProcessIsGone(t *testing.T) {
	start := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	gone, at := driveWaitGone(t, func(now time.Time, pid int) bool {
		return pid == 1 && now.Before(start.Add(100*time.Millisecond))
	}, 2*time.Second)
	ms := time.Millisecond
	want := []time.Duration{0, 20 * ms, 40 * ms, 60 * ms, 80 * ms, 100 * ms}
	if !gone || len(at) != len(want) {
		t.Fatalf("gone %v after looks at %v; want true after looks at %v", gone, at, want)
	}
	for i := range want {
		if at[i] != want[i] {
			t.Fatalf("looked at %v, want %v", at, want)
		}
	}
}

func TestWaitGoneGivesUpAtTheTimeoutOnItsClock(t *testing.T) {
	gone, at := driveWaitGone(t, func(time.Time, int) bool { return true }, 2*time.Second)
	if gone {
		t.Fatal("waitGone answered gone for processes that never went")
	}
	if len(at) != 100 || at[len(at)-1] != 2*time.Second-20*time.Millisecond {
		t.Fatalf("%d looks, the last at %v; want 100, the last at 1.98s", len(at), at[len(at)-1])
	}
}

func TestProcessAlive(t *testing.T) {
	if !processAlive(os.Getpid()) {
		t.Fatal("this process is not alive")
	}
}
