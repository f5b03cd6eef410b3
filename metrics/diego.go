package metrics

import "github.com/prometheus/client_golang/prometheus"

// BBSCalls counts a Diego cell's calls to BBS and their failures, by BBS
// route (a failure is any error: BBS unreachable, an HTTP error, or an
// error BBS answered). Register it with Metrics.Register.
type BBSCalls struct {
	calls, failures *prometheus.CounterVec
}

// NewBBSCalls makes the counters.
func NewBBSCalls() *BBSCalls {
	return &BBSCalls{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "diego_bbs_calls_total",
			Help: "Calls a Diego cell made to BBS, by route."}, []string{"route"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "diego_bbs_call_failures_total",
			Help: "BBS calls that failed (unreachable, HTTP error, or an error in BBS's answer), by route."}, []string{"route"}),
	}
}

// Observe counts one call (rep/bbs Config.Observe).
func (b *BBSCalls) Observe(route string, err error) {
	b.calls.WithLabelValues(route).Inc()
	if err != nil {
		b.failures.WithLabelValues(route).Inc()
	}
}

func (b *BBSCalls) Describe(ch chan<- *prometheus.Desc) {
	b.calls.Describe(ch)
	b.failures.Describe(ch)
}

func (b *BBSCalls) Collect(ch chan<- prometheus.Metric) {
	b.calls.Collect(ch)
	b.failures.Collect(ch)
}
