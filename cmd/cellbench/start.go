package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats.go"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/containerstore/network"
	"github.com/cellagent/cellagent/containerstore/runtime"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

// StartResults: PUT -> routable through the agent next to raw containerd
// create+start, one at a time and Conc at once (per round; Rounds rounds,
// the table shows the median of the rounds' percentiles).
type StartResults struct {
	RawSeq         Dist    `json:"raw_seq"`
	AgentSeq       Dist    `json:"agent_seq"`
	Conc           int     `json:"conc"`
	Rounds         int     `json:"rounds"`
	RawConcP50     float64 `json:"raw_conc_p50_ms"`
	RawConcP99     float64 `json:"raw_conc_p99_ms"`
	AgentConcP50   float64 `json:"agent_conc_p50_ms"`
	AgentConcP99   float64 `json:"agent_conc_p99_ms"`
	RawConcRounds  []Dist  `json:"raw_conc_rounds"`
	AgentConcRound []Dist  `json:"agent_conc_rounds"`
	// InFlight is how many of a round's PUTs are in flight at once (Conc
	// unless -inflight says fewer); AgentConcWallMS is each agent round's
	// time from its first PUT to its last routable (start throughput).
	InFlight        int       `json:"in_flight"`
	AgentConcWallMS []float64 `json:"agent_conc_wall_ms"`
	// Each concurrent round's window, [first start, last start done] in
	// Unix nanoseconds, raw and agent: what a system-wide profile taken
	// beside the bench (perf record -k CLOCK_REALTIME) is cut to, so the
	// CPU of every process can be counted per start of each kind.
	RawConcWindows   [][2]int64 `json:"raw_conc_windows"`
	AgentConcWindows [][2]int64 `json:"agent_conc_windows"`
	// SettledMS is how long each concurrent round, raw then agent in
	// turn, waited for the machine to settle (settle) before it began.
	SettledMS []float64 `json:"settled_ms"`
	// Timeline of the last one-at-a-time start (explain), ms from the PUT.
	Timeline []string `json:"timeline"`
	// Timeline of the slowest start of the last concurrent round.
	ConcTimeline []string `json:"conc_timeline"`
}

// RouteResults: routable event -> router.register received; stop request
// -> router.unregister received; unregister receipt -> the app's SIGTERM.
type RouteResults struct {
	RegisterAfterRoutable Dist    `json:"register_after_routable"`
	UnregisterAfterStop   Dist    `json:"unregister_after_stop"`
	UnregisterLead        Dist    `json:"unregister_lead_over_sigterm"`
	UnregisterFirst       int     `json:"unregister_first"`
	Stops                 int     `json:"stops"`
	NegativeRegister      int     `json:"register_before_routable_event"`
	MinLeadMS             float64 `json:"min_lead_ms"`
}

func cmdStart(args []string) error {
	fs := flag.NewFlagSet("start", flag.ExitOnError)
	results := fs.String("results", "results.json", "results file")
	n := fs.Int("n", 20, "sequential starts")
	conc := fs.Int("c", 20, "concurrent starts per round")
	inflight := fs.Int("inflight", 0, "PUTs in flight at once in an agent round (0: -c, all at once); fewer measures start throughput, as density's 10 in flight")
	rounds := fs.Int("rounds", 5, "concurrent rounds (the figure is their median: one round of 20 moves by +-15% on this machine)")
	workDir := fs.String("dir", "", "work directory (default: a temporary one)")
	var proxyInit *bool // unset: the config's default
	fs.Func("proxy-init", "true or false: the agent's proxy.init (cellinit starts app and proxy; issue 16); default: the config's default", func(s string) error {
		on, err := strconv.ParseBool(s)
		proxyInit = &on
		return err
	})
	pool := fs.Int("pool", -1, "the agent's network.pool_size (-1: its default)")
	logLevel := fs.String("log-level", "info", "the agent's log_level")
	parseFlags(fs, args)
	dir, err := workdir(*workDir)
	if err != nil {
		return err
	}
	var sr StartResults
	sr.Conc, sr.Rounds, sr.InFlight = *conc, *rounds, *conc
	if *inflight > 0 && *inflight < *conc {
		sr.InFlight = *inflight
	}

	progress("raw containerd create+start: %d one at a time", *n)
	ctx := context.Background()
	raw, err := newRawBench(dir)
	if err != nil {
		recordError(*results, "start", fmt.Errorf("raw: %w", err))
		return err
	}
	defer raw.Close()
	rawSeq, err := raw.seq(ctx, *n)
	if err != nil {
		recordError(*results, "start", fmt.Errorf("raw: %w", err))
		return err
	}
	sr.RawSeq = dist(rawSeq)
	progress("raw: one at a time p50 %.0f ms", sr.RawSeq.P50)

	a, err := newAgent(dir, "start", func(c *config.Config) {
		c.Proxy.Init = proxyInit
		c.LogLevel = *logLevel
		if *pool >= 0 {
			c.Network.PoolSize = *pool
		}
	})
	if err != nil {
		recordError(*results, "start", err)
		return err
	}
	defer cleanup(a)
	w, err := watchRoutable(ctx, a)
	if err != nil {
		return err
	}
	rec, closeRec, err := recordRoutes(a)
	if err != nil {
		return err
	}
	defer closeRec()

	progress("agent PUT -> routable: %d one at a time (plus one warm-up), with route (un)registration timing", *n)
	seq, rr, timeline, err := agentSeq(ctx, a, w, rec, *n)
	if err != nil {
		recordError(*results, "start", fmt.Errorf("agent one at a time: %w\n%s", err, tail(a.LogText(), 3000)))
		return err
	}
	sr.AgentSeq = dist(seq)
	sr.Timeline = timeline
	progress("agent: one at a time p50 %.0f ms p99 %.0f ms", sr.AgentSeq.P50, sr.AgentSeq.P99)

	// The concurrent rounds alternate, raw then agent, each after the
	// machine settled: the two sides of each pair see the same machine,
	// which drifts over minutes by more than the target's margin.
	stopProfile := func() {}
	var rawP50s, rawP99s, p50s, p99s []float64
	for r := 0; r < *rounds; r++ {
		waited := settle()
		progress("raw: round %d/%d, %d at once (settled %.1f s)", r+1, *rounds, *conc, waited.Seconds())
		took, window, err := raw.round(ctx, *conc)
		if err != nil {
			recordError(*results, "start", fmt.Errorf("raw concurrent: %w", err))
			return err
		}
		d := dist(took)
		sr.RawConcRounds = append(sr.RawConcRounds, d)
		sr.RawConcWindows = append(sr.RawConcWindows, window)
		rawP50s, rawP99s = append(rawP50s, d.P50), append(rawP99s, d.P99)
		sr.SettledMS = append(sr.SettledMS, ms(waited))

		waited = settle()
		sr.SettledMS = append(sr.SettledMS, ms(waited))
		progress("agent: round %d/%d, %d PUTs, %d in flight (settled %.1f s)", r+1, *rounds, *conc, sr.InFlight, waited.Seconds())
		var guids []string
		for i := 0; i < *conc; i++ {
			guids = append(guids, fmt.Sprintf("c%d-%d", r, i))
		}
		if r == 0 {
			// 10 s from the first agent round: that round and what
			// follows it (its deletes, the next raw round, ...).
			stopProfile = asyncProfile(*results, a, 10, dir, "start-concurrent")
		}
		roundStart := time.Now()
		took, starts, err := startManyAt(ctx, a, w, guids, sr.InFlight, 64)
		if err != nil {
			recordError(*results, "start", fmt.Errorf("agent concurrent: %w", err))
			return err
		}
		if r == *rounds-1 {
			slow := 0
			for i := range took {
				if took[i] > took[slow] {
					slow = i
				}
			}
			sr.ConcTimeline = startTimeline(ctx, a, guids[slow], starts[slow])
		}
		d = dist(took)
		sr.AgentConcRound = append(sr.AgentConcRound, d)
		last := lastRoutable(starts, took)
		sr.AgentConcWindows = append(sr.AgentConcWindows, [2]int64{roundStart.UnixNano(), last.UnixNano()})
		wall := ms(last.Sub(roundStart))
		sr.AgentConcWallMS = append(sr.AgentConcWallMS, wall)
		progress("round %d: p99 raw %.0f ms, agent %.0f ms (%.2fx); all %d agent starts routable %.0f ms after the first PUT",
			r+1, rawP99s[r], d.P99, d.P99/rawP99s[r], *conc, wall)
		p50s, p99s = append(p50s, d.P50), append(p99s, d.P99)
		if err := deleteMany(ctx, a, guids, *conc); err != nil {
			return err
		}
	}
	stopProfile()
	sr.RawConcP50, sr.RawConcP99 = median(rawP50s), median(rawP99s)
	sr.AgentConcP50, sr.AgentConcP99 = median(p50s), median(p99s)
	progress("agent: %d at once p50 %.0f ms p99 %.0f ms", *conc, sr.AgentConcP50, sr.AgentConcP99)
	return update(*results, func(r *Results) {
		r.Start = &sr
		r.Routes = rr
		delete(r.Errors, "start")
	})
}

// lastRoutable answers when the last of a round's starts became routable
// (each start's PUT time plus its PUT -> routable).
func lastRoutable(starts []time.Time, took []time.Duration) time.Time {
	var last time.Time
	for i := range starts {
		if at := starts[i].Add(took[i]); at.After(last) {
			last = at
		}
	}
	return last
}

func workdir(d string) (string, error) {
	if d != "" {
		return d, os.MkdirAll(d, 0o755)
	}
	return os.MkdirTemp("", "cellbench-")
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// rawBench times Prepare+Create+Start of the agent's runtime client
// against containerd, as an agent-less baseline of the start measures
// (host network, no credentials, no proxy; the process is started,
// nothing waits for it to listen).
type rawBench struct {
	rt     *runtime.Client
	logger lager.Logger
}

func newRawBench(dir string) (*rawBench, error) {
	bins, err := testagent.BinDir()
	if err != nil {
		return nil, err
	}
	rootfs := dir + "/raw-rootfs"
	if err := testagent.MakeRootfs(rootfs, bins+"/demo-app"); err != nil {
		return nil, err
	}
	rt, err := runtime.New(runtime.Config{Socket: testagent.Socket(), Namespace: "cellbench-raw", CellID: "cellbench",
		Preloaded: map[string]string{"busybox": rootfs}})
	if err != nil {
		return nil, err
	}
	return &rawBench{rt: rt, logger: lager.NewLogger("cellbench")}, nil
}

func (b *rawBench) Close() { b.rt.Close() }

// one creates and starts guid's container: answers how long that took.
func (b *rawBench) one(ctx context.Context, guid string, port int) (time.Duration, error) {
	_ = b.rt.Delete(ctx, b.logger, guid) // a leftover of an interrupted run
	start := time.Now()
	user, err := b.rt.Prepare(ctx, b.logger, guid, "preloaded:busybox", "vcap")
	if err == nil {
		err = b.rt.Create(ctx, b.logger, containerstore.ContainerSpec{GUID: guid, Path: "/app/server", Args: []string{strconv.Itoa(port)},
			User: user, MemoryLimitBytes: 64 << 20, Hostname: guid})
	}
	if err == nil {
		_, err = b.rt.Start(ctx, b.logger, guid)
	}
	return time.Since(start), err
}

// seq starts (and deletes) n containers one at a time, after one that
// imports the rootfs and is not counted.
func (b *rawBench) seq(ctx context.Context, n int) ([]time.Duration, error) {
	var seq []time.Duration
	for i := 0; i < n+1; i++ {
		guid := fmt.Sprintf("raw-%d", i)
		took, err := b.one(ctx, guid, 18000)
		if derr := b.rt.Delete(ctx, b.logger, guid); err == nil {
			err = derr
		}
		if err != nil {
			return nil, err
		}
		if i > 0 {
			seq = append(seq, took)
		}
	}
	return seq, nil
}

// round starts conc containers at once, then deletes them: answers each
// start's time and the round's window (first start, last start done).
func (b *rawBench) round(ctx context.Context, conc int) ([]time.Duration, [2]int64, error) {
	roundStart := time.Now()
	took := make([]time.Duration, conc)
	errs := make([]error, conc)
	var wg sync.WaitGroup
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			took[i], errs[i] = b.one(ctx, fmt.Sprintf("rawc-%d", i), 18100+i)
		}()
	}
	wg.Wait()
	window := [2]int64{roundStart.UnixNano(), time.Now().UnixNano()}
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.rt.Delete(ctx, b.logger, fmt.Sprintf("rawc-%d", i)); err != nil && errs[i] == nil {
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	return took, window, errors.Join(errs...)
}

// settle waits until the CPUs are mostly idle (at least settleIdle of
// their time over settleSample, as /proc/stat counts it: the network pool's
// own meter), for at most settleMax, and answers how long it waited: each
// concurrent round, raw or agent, starts from a machine that has finished
// what the round before left it (deleted containers' shims and mounts, the
// agent's pool refill), not from whatever it happens to be doing. A meter
// that cannot tell ends the wait.
func settle() time.Duration {
	start := time.Now()
	cpu := network.ProcStatCPU{Window: settleSample}
	for time.Since(start) < settleMax {
		if share, ok := cpu.IdleShare(context.Background()); !ok || share >= settleIdle {
			break
		}
	}
	return time.Since(start)
}

const (
	settleIdle   = 0.85
	settleSample = 250 * time.Millisecond
	settleMax    = 15 * time.Second
)

// routeMsg is the part of a router.(un)register body the bench reads.
type routeMsg struct {
	GUID string `json:"private_instance_id"`
	Host string `json:"host"`
	Port int    `json:"port"`
}

type received struct {
	subject string
	at      time.Time
}

// routeRecorder keeps every router.register/unregister per guid with its
// receipt time.
type routeRecorder struct {
	mu   sync.Mutex
	msgs map[string][]received // guarded by mu
	subs []*nats.Subscription
}

// recordRoutes connects to a's NATS and records its route messages until
// the returned func closes the connection.
func recordRoutes(a *testagent.Agent) (*routeRecorder, func(), error) {
	nc, err := nats.Connect(a.NATSURL())
	if err != nil {
		return nil, nil, err
	}
	return newRouteRecorder(nc), nc.Close, nil
}

func newRouteRecorder(nc *nats.Conn) *routeRecorder {
	r := &routeRecorder{msgs: map[string][]received{}}
	for _, subj := range []string{"router.register", "router.unregister"} {
		s, err := nc.Subscribe(subj, func(m *nats.Msg) {
			at := time.Now()
			var rm routeMsg
			if json.Unmarshal(m.Data, &rm) != nil {
				return
			}
			r.mu.Lock()
			r.msgs[rm.GUID] = append(r.msgs[rm.GUID], received{subject: m.Subject, at: at})
			r.mu.Unlock()
		})
		if err == nil {
			r.subs = append(r.subs, s)
		}
	}
	_ = nc.Flush()
	return r
}

// first answers the first subject message for guid received after since.
func (r *routeRecorder) first(guid, subject string, since time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs[guid] {
		if m.subject == subject && !m.at.Before(since) {
			return m.at, true
		}
	}
	return time.Time{}, false
}

// count answers how many subject messages for guid arrived after since.
func (r *routeRecorder) count(guid, subject string, since time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs[guid] {
		if m.subject == subject && !m.at.Before(since) {
			n++
		}
	}
	return n
}

func (r *routeRecorder) waitFirst(guid, subject string, since time.Time, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if at, ok := r.first(guid, subject, since); ok {
			return at, nil
		}
		time.Sleep(time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("no %s for %s within %s", subject, guid, timeout)
}

var sigtermRE = regexp.MustCompile(`got SIGTERM at (\d+)`)

// agentSeq starts n instances one at a time (after one warm-up) and,
// once each is routable, stops it: PUT -> routable, routable ->
// register, stop -> unregister, unregister -> SIGTERM.
func agentSeq(ctx context.Context, a *testagent.Agent, w *routableWaiter, rec *routeRecorder, n int) (_ []time.Duration, _ *RouteResults, timeline []string, retErr error) {
	var took, reg, unreg, lead []time.Duration
	rr := &RouteResults{MinLeadMS: 1e9}
	for i := 0; i < n+1; i++ {
		guid := fmt.Sprintf("s-%d", i)
		ch := w.expect(guid)
		start := time.Now()
		if _, err := a.Client.AllocateAndRun(ctx, guid, appRequest(guid, 64)); err != nil {
			return nil, nil, nil, err
		}
		r, err := waitRoutable(ch, 60*time.Second)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", guid, err)
		}
		regAt, err := rec.waitFirst(guid, "router.register", start, 5*time.Second)
		if err != nil {
			return nil, nil, nil, err
		}
		if i == n {
			timeline = startTimeline(ctx, a, guid, start)
		}
		stopAt := time.Now()
		if err := a.Client.Stop(ctx, guid); err != nil {
			return nil, nil, nil, err
		}
		unregAt, err := rec.waitFirst(guid, "router.unregister", stopAt, 10*time.Second)
		if err != nil {
			return nil, nil, nil, err
		}
		if _, err := a.WaitState(guid, executor.StateCompleted, 20*time.Second); err != nil {
			return nil, nil, nil, err
		}
		sigAt, err := sigtermTime(ctx, a, guid)
		if err != nil {
			return nil, nil, nil, err
		}
		if err := a.Client.Delete(ctx, guid); err != nil {
			return nil, nil, nil, err
		}
		if i == 0 {
			continue
		}
		took = append(took, r.received.Sub(start))
		d := regAt.Sub(r.event)
		if d < 0 {
			rr.NegativeRegister++
		}
		reg = append(reg, d)
		unreg = append(unreg, unregAt.Sub(stopAt))
		l := sigAt.Sub(unregAt)
		lead = append(lead, l)
		rr.Stops++
		if l > 0 {
			rr.UnregisterFirst++
		}
		rr.MinLeadMS = min(rr.MinLeadMS, ms(l))
	}
	rr.RegisterAfterRoutable, rr.UnregisterAfterStop, rr.UnregisterLead = dist(reg), dist(unreg), dist(lead)
	return took, rr, timeline, nil
}

// sigtermTime reads when the demo app got SIGTERM from its log.
func sigtermTime(ctx context.Context, a *testagent.Agent, guid string) (time.Time, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		rc, err := a.Client.Logs(ctx, guid, executor.LogOptions{Source: executor.LogSourceApp})
		if err != nil {
			return time.Time{}, err
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if m := sigtermRE.FindSubmatch(b); m != nil {
			ns, _ := strconv.ParseInt(string(m[1]), 10, 64)
			return time.Unix(0, ns), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s: no SIGTERM line in the log:\n%s", guid, tail(string(b), 1000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startTimeline merges guid's events (explain) and the agent's log lines
// about it, as ms after start (the PUT). Called once it is routable, before
// the stop.
func startTimeline(ctx context.Context, a *testagent.Agent, guid string, start time.Time) []string {
	type entry struct {
		at   time.Duration
		text string
	}
	var es []entry
	if x, err := a.Client.Explain(ctx, guid); err == nil {
		for _, ev := range x.Timeline {
			es = append(es, entry{ev.Time.Sub(start), "event " + ev.Type + ": " + ev.Message})
		}
	}
	for _, l := range strings.Split(a.LogText(), "\n") {
		var line struct {
			Timestamp time.Time      `json:"timestamp"`
			Message   string         `json:"message"`
			Data      map[string]any `json:"data"`
		}
		if json.Unmarshal([]byte(l), &line) != nil || line.Data["container-guid"] != guid || line.Timestamp.Before(start) {
			continue
		}
		es = append(es, entry{line.Timestamp.Sub(start), "log   " + line.Message})
	}
	sort.SliceStable(es, func(i, j int) bool { return es[i].at < es[j].at })
	var out []string
	for _, e := range es {
		out = append(out, fmt.Sprintf("%+8.1f ms  %s", ms(e.at), e.text))
	}
	return out
}
