// Package metrics serves cellagent's Prometheus metrics: counters fed from
// the agent's own event stream (starts, failures by reason, rotations,
// route registrations, proxy restarts), a start-to-routable histogram, and
// gauges read at scrape time (containers by state, earliest certificate
// expiry, NATS connection, per-container memory app/proxy and CPU).
//
// Run (ifrit) owns the one goroutine that consumes events.
package metrics

import (
	"context"
	"net/http"
	"os"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cellagent/cellagent/executor"
)

// Source is what the metrics read from the store.
type Source interface {
	List(ctx context.Context) ([]executor.Container, error)
	State(ctx context.Context) (executor.CellState, error)
	Events(ctx context.Context, since uint64) (<-chan executor.Event, error)
	LastEventSeq() uint64
}

// Config wires the metrics.
type Config struct {
	Source Source
	// Usage answers a running container's memory use (may be nil).
	Usage func(guid string) *executor.MemoryUsage
	// CPUTime answers the CPU time a container has used (the runtime
	// adapter reads it from the container's cgroup, v1 or v2); nil = no
	// CPU figures.
	CPUTime func(guid string) (time.Duration, error)
	Clock   clock.Clock
	// Observer holds what the agent's parts report directly; made before
	// them (and the store), registered here. nil: a new one.
	Observer *Observer
}

// Metrics is the registry and its event consumer.
type Metrics struct {
	*Observer
	cfg Config
	reg *prometheus.Registry

	starts, issuances, rotations, rotationFailures, unconfirmed, proxyRestarts prometheus.Counter
	failures                                                                   *prometheus.CounterVec
	startToRoutable                                                            prometheus.Histogram

	mu       sync.Mutex // guards routedAt
	routedAt map[string]bool
}

const ns = "cellagent"

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help})
}

// New registers everything.
func New(cfg Config) *Metrics {
	if cfg.Clock == nil {
		cfg.Clock = clock.NewClock()
	}
	if cfg.Observer == nil {
		cfg.Observer = NewObserver()
	}
	m := &Metrics{
		Observer:         cfg.Observer,
		cfg:              cfg,
		reg:              prometheus.NewRegistry(),
		starts:           counter("container_starts_total", "Containers that began to start (run)."),
		issuances:        counter("credential_issuances_total", "Instance identity certificates issued at start."),
		rotations:        counter("credential_rotations_total", "Instance identity certificates rotated."),
		rotationFailures: counter("credential_rotation_failures_total", "Failed rotation attempts (each is retried with backoff until the certificate expires)."),
		unconfirmed:      counter("credential_rotations_unconfirmed_total", "Rotations the proxy did not confirm serving in time (retried)."),
		proxyRestarts:    counter("proxy_restarts_total", "Proxy processes restarted after they exited."),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "container_failures_total",
			Help: "Containers that completed failed, by reason."}, []string{"reason"}),
		startToRoutable: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "start_to_routable_seconds",
			Help: "Time from reservation to first becoming routable.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 12)}),
		routedAt: map[string]bool{},
	}
	o := cfg.Observer
	m.reg.MustRegister(m.starts, o.registrations, o.unregistrations, m.issuances, m.rotations, m.rotationFailures,
		m.unconfirmed, m.proxyRestarts, m.failures, m.startToRoutable, o.issuanceSeconds, o.rotationSeconds,
		&scrape{m: m}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds a collector of another package (e.g. the network filter's
// denial counters).
func (m *Metrics) Register(c prometheus.Collector) error { return m.reg.Register(c) }

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Observer holds the figures the agent's parts report directly rather
// than by events: route (un)registrations from the route hook, issuance
// and rotation durations from the credentials. It is made before those
// parts (which get its methods at construction) and before the store the
// Metrics read; New registers it.
type Observer struct {
	registrations, unregistrations   prometheus.Counter
	issuanceSeconds, rotationSeconds prometheus.Histogram
}

// NewObserver makes an Observer for one Metrics.
func NewObserver() *Observer {
	return &Observer{
		registrations:   counter("route_registrations_total", "Instances that became routable (routes registered)."),
		unregistrations: counter("route_unregistrations_total", "Instances whose routes were withdrawn (stop, crash, not ready, proxy down)."),
		issuanceSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "credential_issuance_seconds",
			Help: "Time to issue and write an instance certificate.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		rotationSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "credential_rotation_seconds",
			Help:    "Time to rotate an instance certificate: key, signing, files, and the proxy confirming it serves the new serial.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
	}
}

// ObserveIssuance records how long issuing a certificate took.
func (o *Observer) ObserveIssuance(d time.Duration) { o.issuanceSeconds.Observe(d.Seconds()) }

// ObserveRotation records how long a successful rotation took.
func (o *Observer) ObserveRotation(d time.Duration) { o.rotationSeconds.Observe(d.Seconds()) }

// Registered and Unregistered count route changes (from the route hook).
func (o *Observer) Registered()   { o.registrations.Inc() }
func (o *Observer) Unregistered() { o.unregistrations.Inc() }

// failureLabel is the label value of a failure: its code, or "other" for
// a result without one (written by an agent before codes existed).
func failureLabel(code executor.FailureCode) string {
	if code == "" {
		return string(executor.FailureOther)
	}
	return string(code)
}

// Run consumes the event stream until signalled.
func (m *Metrics) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs, err := m.cfg.Source.Events(ctx, m.cfg.Source.LastEventSeq())
	if err != nil {
		return err
	}
	close(ready)
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				return nil
			}
			m.record(ev)
		case <-signals:
			return nil
		}
	}
}

func (m *Metrics) record(ev executor.Event) {
	switch ev.Type {
	case executor.EventContainerState:
		if ev.Container == nil {
			return
		}
		switch ev.Container.State {
		case executor.StateInitializing:
			m.starts.Inc()
		case executor.StateCompleted:
			if rr := ev.Container.RunResult; rr.Failed {
				m.failures.WithLabelValues(failureLabel(rr.FailureCode)).Inc()
			}
		}
	case executor.EventContainerRoutable:
		if ev.Container != nil && ev.Container.Routable {
			m.mu.Lock()
			first := !m.routedAt[ev.GUID]
			m.routedAt[ev.GUID] = true
			m.mu.Unlock()
			if first {
				m.startToRoutable.Observe(ev.Time.Sub(ev.Container.CreatedAt).Seconds())
			}
		}
	case executor.EventContainerDeleted:
		m.mu.Lock()
		delete(m.routedAt, ev.GUID)
		m.mu.Unlock()
	case executor.EventCredentialsIssued:
		m.issuances.Inc()
	case executor.EventCredentialsRotated:
		m.rotations.Inc()
	case executor.EventCredentialsFailed:
		m.rotationFailures.Inc()
	case executor.EventRotationUnconfirmed:
		m.unconfirmed.Inc()
	case executor.EventProxyRestarted:
		m.proxyRestarts.Inc()
	}
}

// scrape collects the gauges that are read when Prometheus asks.
type scrape struct{ m *Metrics }

var (
	descContainers = prometheus.NewDesc(ns+"_containers", "Containers by state.", []string{"state"}, nil)
	descRoutable   = prometheus.NewDesc(ns+"_containers_routable", "Containers that are routable now.", nil, nil)
	descExpiry     = prometheus.NewDesc(ns+"_certificate_earliest_expiry_seconds", "Seconds until the earliest instance certificate expires.", nil, nil)
	descNATS       = prometheus.NewDesc(ns+"_nats_connected", "1 when the route emitter is connected to NATS.", nil, nil)
	descMemory     = prometheus.NewDesc(ns+"_container_memory_bytes", "Memory used by a running container, app and proxy apart.", []string{"guid", "component"}, nil)
	descCPU        = prometheus.NewDesc(ns+"_container_cpu_seconds_total", "CPU time used by a container (app and proxy).", []string{"guid"}, nil)
	descCapacity   = prometheus.NewDesc(ns+"_capacity_memory_mb", "Cell memory capacity, total and available.", []string{"kind"}, nil)
)

func (s *scrape) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descContainers, descRoutable, descExpiry, descNATS, descMemory, descCPU, descCapacity} {
		ch <- d
	}
}

func (s *scrape) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m := s.m
	st, err := m.cfg.Source.State(ctx)
	if err == nil {
		for state, n := range st.Containers {
			ch <- prometheus.MustNewConstMetric(descContainers, prometheus.GaugeValue, float64(n), state)
		}
		connected := 0.0
		if st.NATS == "connected" {
			connected = 1
		}
		ch <- prometheus.MustNewConstMetric(descNATS, prometheus.GaugeValue, connected)
		ch <- prometheus.MustNewConstMetric(descCapacity, prometheus.GaugeValue, float64(st.Total.MemoryMB), "total")
		ch <- prometheus.MustNewConstMetric(descCapacity, prometheus.GaugeValue, float64(st.Available.MemoryMB), "available")
	}
	cs, err := m.cfg.Source.List(ctx)
	if err != nil {
		return
	}
	routable := 0
	var earliest time.Time
	for _, c := range cs {
		if c.Routable {
			routable++
		}
		if c.State != executor.StateRunning {
			continue
		}
		if c.Credentials != nil && (earliest.IsZero() || c.Credentials.NotAfter.Before(earliest)) {
			earliest = c.Credentials.NotAfter
		}
		if m.cfg.Usage != nil {
			if u := m.cfg.Usage(c.GUID); u != nil {
				ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(u.AppBytes), c.GUID, "app")
				ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(u.ProxyBytes), c.GUID, "proxy")
			}
		}
		if m.cfg.CPUTime != nil {
			if d, err := m.cfg.CPUTime(c.GUID); err == nil {
				ch <- prometheus.MustNewConstMetric(descCPU, prometheus.CounterValue, d.Seconds(), c.GUID)
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(descRoutable, prometheus.GaugeValue, float64(routable))
	if !earliest.IsZero() {
		ch <- prometheus.MustNewConstMetric(descExpiry, prometheus.GaugeValue, earliest.Sub(m.cfg.Clock.Now()).Seconds())
	}
}
