package backoff_test

import (
	"testing"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"

	"github.com/cellagent/cellagent/internal/backoff"
)

func TestBackoffDoublesUpToMaxOnTheClock(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(0, 0))
	b := backoff.New(clk, 250*time.Millisecond, time.Second)
	var got []time.Duration
	for range 5 {
		got = append(got, b.Current())
		waited := make(chan bool)
		go func() { waited <- b.Wait(nil) }()
		clk.WaitForWatcherAndIncrement(b.Current() - time.Nanosecond)
		select {
		case <-waited:
			t.Fatalf("Wait returned before its delay of %s", got[len(got)-1])
		default:
		}
		clk.Increment(time.Nanosecond)
		if !<-waited {
			t.Fatal("Wait answered false with nothing closed")
		}
	}
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, time.Second, time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays = %v, want %v", got, want)
		}
	}
	b.Reset()
	if b.Current() != 250*time.Millisecond {
		t.Errorf("after Reset: %s, want 250ms", b.Current())
	}
}

func TestBackoffWaitEndsWhenDone(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(0, 0))
	b := backoff.New(clk, time.Hour, time.Hour)
	done := make(chan struct{})
	close(done)
	if b.Wait(done) {
		t.Error("Wait answered true though done was closed")
	}
	if b.Current() != time.Hour {
		t.Errorf("a cut Wait doubled the delay to %s", b.Current())
	}
}

func TestBackoffWithMaxBelowInitialIsConstant(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(0, 0))
	b := backoff.New(clk, time.Second, 0)
	waited := make(chan bool)
	go func() { waited <- b.Wait(nil) }()
	clk.WaitForWatcherAndIncrement(time.Second)
	<-waited
	if b.Current() != time.Second {
		t.Errorf("delay = %s, want a constant 1s", b.Current())
	}
}

func TestBackoffNextDoublesWithoutWaiting(t *testing.T) {
	b := backoff.New(fakeclock.NewFakeClock(time.Unix(0, 0)), time.Second, 5*time.Second)
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
	}
	s := time.Second
	want := []time.Duration{s, 2 * s, 4 * s, 5 * s, 5 * s}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Next = %v, want %v", got, want)
		}
	}
	b.Reset()
	if d := b.Next(); d != time.Second {
		t.Errorf("Next after Reset = %s, want 1s", d)
	}
}
