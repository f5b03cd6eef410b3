package metrics_test

import (
	"context"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/metrics"
)

// source is a Source that answers fixed state and a scripted event stream.
type source struct {
	events chan executor.Event
	list   []executor.Container
}

func (s *source) List(context.Context) ([]executor.Container, error) { return s.list, nil }
func (s *source) State(context.Context) (executor.CellState, error) {
	return executor.CellState{NATS: "connected", Containers: map[string]int{"running": len(s.list)}}, nil
}
func (s *source) Events(context.Context, uint64) (<-chan executor.Event, error) { return s.events, nil }
func (s *source) LastEventSeq() uint64                                          { return 0 }

func TestCountersFollowEvents(t *testing.T) {
	now := time.Now()
	src := &source{events: make(chan executor.Event, 16), list: []executor.Container{{GUID: "g1", State: executor.StateRunning,
		Credentials: &executor.CredentialInfo{NotAfter: now.Add(time.Hour)}}}}
	m := metrics.New(metrics.Config{Source: src})
	signals := make(chan osSignal)
	ready := make(chan struct{})
	done := make(chan error)
	go func() { done <- m.Run(signals, ready) }()
	<-ready

	created := now.Add(-2 * time.Second)
	src.events <- executor.Event{Type: executor.EventContainerState, GUID: "g1", Container: &executor.Container{State: executor.StateInitializing}}
	src.events <- executor.Event{Type: executor.EventContainerRoutable, GUID: "g1", Time: now, Container: &executor.Container{Routable: true, CreatedAt: created}}
	src.events <- executor.Event{Type: executor.EventContainerRoutable, GUID: "g1", Time: now.Add(time.Minute), Container: &executor.Container{Routable: true, CreatedAt: created}}
	src.events <- executor.Event{Type: executor.EventCredentialsRotated, GUID: "g1"}
	src.events <- executor.Event{Type: executor.EventContainerState, GUID: "g1", Container: &executor.Container{State: executor.StateCompleted,
		RunResult: executor.RunResult{Failed: true, FailureCode: executor.FailureAppExited, FailureReason: "app exited with status 1"}}}
	// The label is the code, whatever the message says.
	src.events <- executor.Event{Type: executor.EventContainerState, GUID: "g2", Container: &executor.Container{State: executor.StateCompleted,
		RunResult: executor.RunResult{Failed: true, FailureCode: executor.FailureProxyFailed, FailureReason: "app exited with status 1"}}}
	// One written before codes existed counts as other.
	src.events <- executor.Event{Type: executor.EventContainerState, GUID: "g3", Container: &executor.Container{State: executor.StateCompleted,
		RunResult: executor.RunResult{Failed: true, FailureReason: "start timeout: not ready"}}}
	src.events <- executor.Event{Type: executor.EventRotationUnconfirmed, GUID: "g1"}
	m.Registered()
	m.ObserveRotation(1500 * time.Millisecond)
	close(src.events)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	fams := scrape(t, m)
	value := func(name string) float64 {
		f := fams[name]
		if f == nil || len(f.Metric) == 0 {
			t.Fatalf("no metric %s", name)
		}
		mt := f.Metric[0]
		switch {
		case mt.Counter != nil:
			return mt.Counter.GetValue()
		case mt.Gauge != nil:
			return mt.Gauge.GetValue()
		case mt.Histogram != nil:
			return float64(mt.Histogram.GetSampleCount())
		}
		return -1
	}
	for name, want := range map[string]float64{
		"cellagent_container_starts_total":                 1,
		"cellagent_start_to_routable_seconds":              1, // the second routable event is not a new start
		"cellagent_credential_rotations_total":             1,
		"cellagent_credential_rotation_seconds":            1,
		"cellagent_credential_rotations_unconfirmed_total": 1,
		"cellagent_route_registrations_total":              1,
		"cellagent_nats_connected":                         1,
		"cellagent_containers_routable":                    0,
	} {
		if got := value(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	failures := map[string]float64{}
	for _, mt := range fams["cellagent_container_failures_total"].GetMetric() {
		for _, l := range mt.GetLabel() {
			failures[l.GetName()+"="+l.GetValue()] = mt.GetCounter().GetValue()
		}
	}
	if want := map[string]float64{"reason=app_exited": 1, "reason=proxy_failed": 1, "reason=other": 1}; !reflect.DeepEqual(failures, want) {
		t.Errorf("failures = %v, want %v", failures, want)
	}
	if got := fams["cellagent_start_to_routable_seconds"].Metric[0].Histogram.GetSampleSum(); got < 1.9 || got > 2.1 {
		t.Errorf("start to routable sum = %v, want ~2s", got)
	}
	if got := value("cellagent_certificate_earliest_expiry_seconds"); got < 3500 || got > 3600 {
		t.Errorf("earliest expiry = %v, want ~3600", got)
	}
}

type osSignal = os.Signal

// scrape answers what GET /metrics serves, parsed.
func scrape(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	return fams
}

// TestScrapeAsksTheRuntimeForCPU: the CPU counter is what the runtime
// adapter's CPUTime answers (from cgroup v1 or v2), per running container;
// a container without a figure has no sample rather than a zero.
func TestScrapeAsksTheRuntimeForCPU(t *testing.T) {
	src := &source{list: []executor.Container{{GUID: "g1", State: executor.StateRunning}, {GUID: "g2", State: executor.StateRunning},
		{GUID: "g3", State: executor.StateCompleted}}}
	var asked []string
	m := metrics.New(metrics.Config{Source: src, CPUTime: func(guid string) (time.Duration, error) {
		asked = append(asked, guid)
		if guid == "g2" {
			return 0, os.ErrNotExist
		}
		return 2500 * time.Millisecond, nil
	}})
	fams := scrape(t, m)
	f := fams["cellagent_container_cpu_seconds_total"]
	if f == nil || len(f.Metric) != 1 {
		t.Fatalf("cpu samples = %v, want one (g1)", f)
	}
	if got := f.Metric[0].Counter.GetValue(); got != 2.5 {
		t.Errorf("g1 cpu seconds = %v, want 2.5", got)
	}
	if strings.Join(asked, ",") != "g1,g2" {
		t.Errorf("asked for %v, want the running containers g1,g2", asked)
	}
}
