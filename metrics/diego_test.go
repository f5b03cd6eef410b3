package metrics_test

import (
	"errors"
	"testing"

	"github.com/cellagent/cellagent/metrics"
)

// TestBBSCallsByRoute: each BBS call counts once by route, a failed one
// also as a failure, and both are served on /metrics.
func TestBBSCallsByRoute(t *testing.T) {
	m := metrics.New(metrics.Config{Source: &source{}})
	b := metrics.NewBBSCalls()
	if err := m.Register(b); err != nil {
		t.Fatal(err)
	}
	b.Observe("/v1/actual_lrps/claim", nil)
	b.Observe("/v1/actual_lrps/claim", errors.New("bbs: ActualLRPCannotBeClaimed"))
	b.Observe("/v1/actual_lrps/start.r1", nil)
	fams := scrape(t, m)
	got := map[string]float64{}
	for _, name := range []string{"cellagent_diego_bbs_calls_total", "cellagent_diego_bbs_call_failures_total"} {
		f, ok := fams[name]
		if !ok {
			t.Fatalf("%s is not served", name)
		}
		for _, s := range f.GetMetric() {
			got[name+" "+s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"cellagent_diego_bbs_calls_total /v1/actual_lrps/claim":         2,
		"cellagent_diego_bbs_calls_total /v1/actual_lrps/start.r1":      1,
		"cellagent_diego_bbs_call_failures_total /v1/actual_lrps/claim": 1,
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
