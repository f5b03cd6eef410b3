// Command cellbench measures cellagent on this machine against baselines
// taken in the same run (raw containerd, haproxy) and writes what it finds
// into a JSON results file; `cellbench report` turns that file into
// BENCHMARKS.md. scripts/bench runs the subcommands in order:
//
//	cellbench start    -results R   start to routable, one at a time and N
//	                                concurrently, next to raw containerd
//	                                create+start; route (un)registration
//	                                latency and the unregister's lead over
//	                                the app's SIGTERM
//	cellbench density  -results R   250 instances with proxies: agent RSS,
//	                                proxy RSS, idle agent CPU, time to start
//	                                them all; then kill -9 and restart the
//	                                agent: time to adopt and re-register,
//	                                app restarts
//	cellbench rotation -results R   agent CPU per rotation for ecdsa-p256 and
//	                                rsa-3072, with TLS load through the
//	                                proxies: failures and p99 before/during
//	cellbench report   -results R   BENCHMARKS.md on stdout
//	cellbench load ...              the load generator (run by rotation,
//	                                pinned with taskset)
//
// Needs root and the private containerd (scripts/lib.sh start_containerd).
// Every agent it starts uses network cellagentbm (bridge cellagentbm0,
// 10.254.144.0/22, host ports 49000-50999) and a containerd namespace of its
// own, one agent at a time, and deletes its containers when done.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "start":
		err = cmdStart(os.Args[2:])
	case "density":
		err = cmdDensity(os.Args[2:])
	case "rotation":
		err = cmdRotation(os.Args[2:])
	case "load":
		err = cmdLoad(os.Args[2:])
	case "report":
		err = cmdReport(os.Args[2:])
	case "cpu":
		err = cmdCPU(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cellbench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: cellbench start|density|rotation|report|cpu -results FILE [flags] (see -h of each)")
	os.Exit(2)
}

// parseFlags parses a subcommand's flags (its FlagSet exits on a bad
// flag) and exits 2 on a stray argument: every subcommand takes flags
// only, and an argument it ignored would measure something else than
// asked.
func parseFlags(fs *flag.FlagSet, args []string) {
	_ = fs.Parse(args)
	if err := noArgs(fs); err != nil {
		fmt.Fprintln(fs.Output(), err)
		os.Exit(2)
	}
}

func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("cellbench %s: unexpected argument %q\nusage: cellbench %s [flags] (flags only; see cellbench %s -h)",
			fs.Name(), fs.Arg(0), fs.Name(), fs.Name())
	}
	return nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// Results is the results file: each subcommand fills its own sections and
// keeps the others.
type Results struct {
	Start    *StartResults      `json:"start,omitempty"`
	Routes   *RouteResults      `json:"routes,omitempty"`
	Density  []DensityResults   `json:"density,omitempty"`
	Restarts []RestartResults   `json:"restarts,omitempty"`
	Rotation []RotationResult   `json:"rotation,omitempty"`
	Errors   map[string]string  `json:"errors,omitempty"`
	Profiles map[string]string  `json:"profiles,omitempty"` // name -> pprof -top text
	Commands map[string]string  `json:"commands,omitempty"` // section -> command line
	Extra    map[string]float64 `json:"extra,omitempty"`
}

var resultsMu sync.Mutex

// readResults loads a results file.
func readResults(path string) (Results, error) {
	var r Results
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// update loads path, lets fn change it and writes it back.
func update(path string, fn func(*Results)) error {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	var r Results
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	fn(&r)
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func recordError(path, section string, err error) {
	_ = update(path, func(r *Results) {
		if r.Errors == nil {
			r.Errors = map[string]string{}
		}
		r.Errors[section] = err.Error()
	})
}

func recordProfile(path, name, text string) {
	_ = update(path, func(r *Results) {
		if r.Profiles == nil {
			r.Profiles = map[string]string{}
		}
		r.Profiles[name] = text
	})
}

// Dist is a set of durations in milliseconds with its percentiles.
type Dist struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
	Min float64 `json:"min_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pct is the nearest-rank percentile of s (not modified).
func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := append([]time.Duration{}, s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	i := int(float64(len(c))*p+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(c) {
		i = len(c) - 1
	}
	return c[i]
}

func dist(s []time.Duration) Dist {
	return Dist{N: len(s), P50: ms(pct(s, 0.5)), P90: ms(pct(s, 0.9)), P99: ms(pct(s, 0.99)),
		Max: ms(pct(s, 1)), Min: ms(pct(s, 0))}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	c := append([]float64{}, v...)
	sort.Float64s(c)
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	return (c[len(c)/2-1] + c[len(c)/2]) / 2
}

// Bench network: one agent at a time uses it.
const (
	benchNetName  = "cellagentbm"
	benchBridge   = "cellagentbm0"
	benchSubnet   = "10.254.144.0/22" // 1022 addresses; 10.254.131.0/24 is integration/hardening's
	benchPortsLow = 49000
	benchPorts    = "49000-50999" // two per instance (app + proxy): 500 instances and room
)

func benchConfig(c *config.Config) {
	c.LogLevel = "info"
	c.Network.Mode = "bridge"
	c.Network.Name = benchNetName
	c.Network.Bridge = benchBridge
	c.Network.Subnet = benchSubnet
	c.Network.HostPortRange = benchPorts
	c.Network.PortQuarantine = 0
	c.Network.PoolSize = config.DefaultConfig().Network.PoolSize // what a cell runs with
	c.Identity.Tmpfs = config.DefaultConfig().Identity.Tmpfs
	c.Proxy.Enabled = true
	c.Capacity.MemoryMB = 100000
	c.Capacity.DiskMB = 100000
	c.Capacity.MaxContainers = 600
	c.Listen.Pprof = true // CPU profiles for the report
}

// newAgent starts an agent in dir/name with the bench network and modify.
func newAgent(dir, name string, modify func(*config.Config)) (*testagent.Agent, error) {
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return nil, err
	}
	a, err := testagent.New(d, fmt.Sprintf("%s%d", name, time.Now().UnixNano()%100000), func(c *config.Config) {
		benchConfig(c)
		if modify != nil {
			modify(c)
		}
	})
	if err != nil {
		return nil, err
	}
	if err := a.Start(); err != nil {
		return nil, err
	}
	return a, nil
}

// appRequest runs the demo app on 8080 with an HTTP check and a route.
func appRequest(guid string, memoryMB int) executor.RunRequest {
	return executor.RunRequest{
		LogGUID:   "bench-app",
		Image:     "preloaded:busybox",
		Resources: &executor.Resources{MemoryMB: memoryMB, DiskMB: 16},
		Process:   executor.Process{Path: "/app/server", Args: []string{"8080"}},
		Ports:     []uint16{8080},
		Routes:    []executor.Route{{Hostnames: []string{guid + ".bench.example.com"}, Port: 8080}},
		Check:     &executor.Check{TCP: &executor.TCPCheck{Port: 8080}},
		StopGrace: executor.Duration(2 * time.Second),
	}
}

// routableWaiter dispatches one event stream to per-guid waiters.
type routableWaiter struct {
	mu      sync.Mutex
	waiters map[string]chan routableAt // guarded by mu
	done    chan struct{}
}

type routableAt struct {
	received time.Time // when the bench read the event
	event    time.Time // the event's own time (agent clock = this machine's)
	err      error
}

// watchRoutable follows the agent's events from now on until ctx ends.
func watchRoutable(ctx context.Context, a *testagent.Agent) (*routableWaiter, error) {
	evs, err := a.Client.Events(ctx, a.LastSeq(ctx))
	if err != nil {
		return nil, err
	}
	w := &routableWaiter{waiters: map[string]chan routableAt{}, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for ev := range evs {
			if ev.Container == nil {
				continue
			}
			var r routableAt
			switch {
			case ev.Type == executor.EventContainerRoutable && ev.Container.Routable:
				r = routableAt{received: time.Now(), event: ev.Time}
			case ev.Container.State == executor.StateCompleted:
				r = routableAt{err: fmt.Errorf("%s completed: %s", ev.GUID, ev.Container.RunResult.FailureReason)}
			default:
				continue
			}
			w.mu.Lock()
			ch := w.waiters[ev.GUID]
			delete(w.waiters, ev.GUID)
			w.mu.Unlock()
			if ch != nil {
				ch <- r
			}
		}
	}()
	return w, nil
}

// expect registers interest in guid's next routable event; call it before
// the PUT.
func (w *routableWaiter) expect(guid string) <-chan routableAt {
	ch := make(chan routableAt, 1)
	w.mu.Lock()
	w.waiters[guid] = ch
	w.mu.Unlock()
	return ch
}

func waitRoutable(ch <-chan routableAt, timeout time.Duration) (routableAt, error) {
	select {
	case r := <-ch:
		return r, r.err
	case <-time.After(timeout):
		return routableAt{}, fmt.Errorf("not routable within %s", timeout)
	}
}

// startMany starts guids with at most conc PUTs in flight, each waiting
// for its routable event; answers each one's PUT -> routable time.
func startMany(ctx context.Context, a *testagent.Agent, w *routableWaiter, guids []string, conc, memoryMB int) ([]time.Duration, error) {
	took, _, err := startManyAt(ctx, a, w, guids, conc, memoryMB)
	return took, err
}

// startManyAt is startMany that also answers when each PUT was sent.
func startManyAt(ctx context.Context, a *testagent.Agent, w *routableWaiter, guids []string, conc, memoryMB int) ([]time.Duration, []time.Time, error) {
	took := make([]time.Duration, len(guids))
	starts := make([]time.Time, len(guids))
	errs := make([]error, len(guids))
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i, g := range guids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ch := w.expect(g)
			start := time.Now()
			starts[i] = start
			if _, err := a.Client.AllocateAndRun(ctx, g, appRequest(g, memoryMB)); err != nil {
				errs[i] = fmt.Errorf("put %s: %w", g, err)
				return
			}
			r, err := waitRoutable(ch, 120*time.Second)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", g, err)
				return
			}
			took[i] = r.received.Sub(start)
		}()
	}
	wg.Wait()
	return took, starts, errors.Join(errs...)
}

// deleteMany deletes guids, conc at a time.
func deleteMany(ctx context.Context, a *testagent.Agent, guids []string, conc int) error {
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, g := range guids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := a.Client.Delete(ctx, g); err != nil && !errors.Is(err, executor.ErrContainerNotFound) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("delete %s: %w", g, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// cleanup deletes every container of a (bounded) and stops it.
func cleanup(a *testagent.Agent) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if cs, err := a.Client.List(ctx); err == nil {
		var guids []string
		for _, c := range cs {
			guids = append(guids, c.GUID)
		}
		if len(guids) > 0 {
			progress("deleting %d containers", len(guids))
		}
		if err := deleteMany(ctx, a, guids, 10); err != nil {
			progress("cleanup: %v", err)
		}
	}
	_ = a.Stop()
	a.ReleaseSecretDirs()
}

// procCPU is utime+stime of pid in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(s[i+2:])
	// fields after comm: state(0) ... utime(11) stime(12)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100, nil // USER_HZ is 100 on Linux
}

// procCPUPrecise is the CPU time of all of pid's threads in seconds, from
// /proc/<pid>/task/*/schedstat (nanoseconds; /proc/<pid>/stat counts 10 ms
// ticks, too coarse for a few rotations). Threads that exited are not
// counted, so use it over windows where the Go runtime keeps its threads.
func procCPUPrecise(pid int) (float64, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var ns int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			v, _ := strconv.ParseInt(f[0], 10, 64)
			ns += v
		}
	}
	return float64(ns) / 1e9, nil
}

// procStatusKB reads a "Key: N kB" line of /proc/pid/status.
func procStatusKB(pid int, key string) (int, error) {
	return procKB(fmt.Sprintf("/proc/%d/status", pid), key)
}

// procKB reads a "Key: N kB" line of a /proc file.
func procKB(path, key string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			fs := strings.Fields(rest)
			if len(fs) > 0 {
				return strconv.Atoi(fs[0])
			}
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
}

// profileAgent fetches a CPU profile of seconds from the agent's pprof
// into file. Run it in a goroutine beside the measurement.
func profileAgent(a *testagent.Agent, seconds int, file string) error {
	c := http.Client{Timeout: time.Duration(seconds+30) * time.Second}
	resp, err := c.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", a.API, seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("pprof: %s", resp.Status)
	}
	out, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// profileTop answers `go tool pprof -top` of a profile file. It is a Go
// build tool's run of about half a second of CPU: never call it while a
// measurement runs beside it (it ran in the third start round once).
func profileTop(file string) (string, error) {
	top, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=35", file).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof: %v: %s", err, top)
	}
	return string(top), nil
}

// asyncProfile starts profileAgent and answers a function that waits for
// it, then summarises it (profileTop, after the measurement) and records
// the text under name.
func asyncProfile(results string, a *testagent.Agent, seconds int, dir, name string) func() {
	file := filepath.Join(dir, name+".pprof")
	done := make(chan error, 1)
	go func() { done <- profileAgent(a, seconds, file) }()
	return func() {
		err := <-done
		top := ""
		if err == nil {
			top, err = profileTop(file)
		}
		if err != nil {
			top = "profile failed: " + err.Error()
		}
		recordProfile(results, name, top)
	}
}
