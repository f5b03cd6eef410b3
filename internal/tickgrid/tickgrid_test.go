package tickgrid_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cellagent/cellagent/internal/depcheck"
	"github.com/cellagent/cellagent/internal/tickgrid"
)

func TestNextRoundsUpToAWholeTick(t *testing.T) {
	at := func(s, ns int) time.Time { return time.Date(2026, 12, 2, 12, 0, s, ns, time.UTC) }
	for _, c := range []struct {
		name     string
		in, want time.Time
	}{
		{"on the grid already", at(30, 0), at(30, 0)},
		{"just past a second", at(30, 1), at(31, 0)},
		{"just before a second", at(30, 999999999), at(31, 0)},
	} {
		if got := tickgrid.Next(c.in, time.Second); !got.Equal(c.want) {
			t.Errorf("%s: Next(%s) = %s, want %s", c.name, c.in, got, c.want)
		}
	}
}

// A timer set from the answer follows the monotonic clock, so the rounds do
// not follow wall clock steps.
func TestNextKeepsTheMonotonicReading(t *testing.T) {
	if got := tickgrid.Next(time.Now().Add(300*time.Millisecond), time.Second).String(); !strings.Contains(got, "m=+") {
		t.Errorf("Next lost the monotonic reading: %s", got)
	}
}

func TestAfterSkipsTheRoundsALateCallerMissed(t *testing.T) {
	next := time.Date(2026, 12, 2, 12, 0, 30, 0, time.UTC)
	for _, c := range []struct {
		name       string
		late, want time.Duration
	}{
		{"on time", 0, 30 * time.Second},
		{"late within the period", 10 * time.Second, 30 * time.Second},
		{"exactly one period late", 30 * time.Second, 60 * time.Second},
		{"an hour late: one round, not 120", time.Hour + 5*time.Second, time.Hour + 30*time.Second},
	} {
		if got := tickgrid.After(next, next.Add(c.late), 30*time.Second); !got.Equal(next.Add(c.want)) {
			t.Errorf("%s: After = %s, want %s", c.name, got, next.Add(c.want))
		}
	}
}

// TestImportRules: a leaf.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "internal/tickgrid", Project: []string{}})
}
