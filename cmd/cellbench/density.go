package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
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

// DensityResults: N instances with proxies on one agent.
type DensityResults struct {
	N               int    `json:"n"`
	Conc            int    `json:"conc"`
	MemoryMB        int    `json:"memory_mb"`
	ProxyKind       string `json:"proxy_kind"`
	ProxyOverheadMB int    `json:"proxy_overhead_mb"`
	// StartAllSeconds is the time spent starting all N (the steps' starts
	// added up); Started were started in this step.
	StartAllSeconds float64 `json:"start_all_s"`
	Started         int     `json:"started"`
	StartEach       Dist    `json:"start_each"`
	AgentRSSMB      float64 `json:"agent_rss_mb"`
	AgentHWMMB      float64 `json:"agent_hwm_mb"`
	// Each container's processes by executable (see procs.go).
	Proxy ProcMemory `json:"proxy"`
	App   ProcMemory `json:"app"`
	Init  ProcMemory `json:"cellinit"`
	// What the proxy costs an instance (its memory limit holds
	// proxy.memory_overhead_mb for it): proxy + cellinit, the largest
	// over the instances.
	OverheadPssMaxMB  float64 `json:"proxy_and_cellinit_pss_max_mb"`
	OverheadAnonMaxMB float64 `json:"proxy_and_cellinit_anon_max_mb"`
	// The network pool's refill after the starts (waitPoolFull): how
	// long it took and the agent's CPU meanwhile. The idle window starts
	// after it.
	PoolRefillSeconds    float64 `json:"pool_refill_s"`
	PoolRefillCPUSeconds float64 `json:"pool_refill_cpu_s"`
	PoolFull             bool    `json:"pool_full"`
	IdleCPUPrecise       float64 `json:"idle_cpu_s_schedstat"`
	IdleSeconds          float64 `json:"idle_s"`
	IdleCPUSeconds       float64 `json:"idle_cpu_s"`
	IdleCPUPercent       float64 `json:"idle_cpu_pct_of_core"`
	HealthSeconds        float64 `json:"health_check_interval_s"`
	DeleteAllSecond      float64 `json:"delete_all_s"`
}

// RestartResults: kill -9 of the agent with N instances, then a restart.
type RestartResults struct {
	N                  int     `json:"n"`
	APISeconds         float64 `json:"api_s"`
	AdoptedSeconds     float64 `json:"all_running_routable_s"`
	RoutesSeconds      float64 `json:"all_registered_s"`
	Adopted            int     `json:"adopted"`
	Registered         int     `json:"registered"`
	AppRestarts        int     `json:"app_restarts"`
	ProxyRestarts      int     `json:"proxy_restarts"`
	RegistersPerGUIDMn int     `json:"registers_per_guid_min"`
	RegistersPerGUIDMx int     `json:"registers_per_guid_max"`
	CountWindowSeconds float64 `json:"count_window_s"`
}

func cmdDensity(args []string) error {
	fs := flag.NewFlagSet("density", flag.ExitOnError)
	results := fs.String("results", "results.json", "results file")
	n := fs.String("n", "250", "instances; a rising list (250,500) measures each step, starting only the new ones")
	conc := fs.Int("c", 10, "PUTs in flight while starting them")
	idle := fs.Duration("idle", 60*time.Second, "idle CPU window")
	memoryMB := fs.Int("memory", 8, "memory_mb of each instance")
	restarts := fs.Int("restarts", 3, "kill -9 restarts at each step, one after the other")
	workDir := fs.String("dir", "", "work directory (default: a temporary one)")
	parseFlags(fs, args)
	steps, err := parseSteps(*n)
	if err != nil {
		return err
	}
	dir, err := workdir(*workDir)
	if err != nil {
		return err
	}
	err = density(*results, dir, densityOpts{steps: steps, conc: *conc, idle: *idle, memoryMB: *memoryMB, restarts: *restarts})
	if err != nil {
		recordError(*results, "density", err)
	}
	return err
}

// parseSteps reads "250,500": positive, rising.
func parseSteps(list string) ([]int, error) {
	var steps []int
	for _, f := range strings.Split(list, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 || (len(steps) > 0 && v <= steps[len(steps)-1]) {
			return nil, fmt.Errorf("-n %q: want rising positive counts, such as 250,500", list)
		}
		steps = append(steps, v)
	}
	return steps, nil
}

type densityOpts struct {
	steps                    []int
	conc, memoryMB, restarts int
	idle                     time.Duration
}

func density(results, dir string, o densityOpts) error {
	conc := o.conc
	// An external NATS (in this process) that outlives the agent, as in
	// production: with the embedded one, kill -9 takes the server down and
	// the bench's subscriber would miss what the restarted agent sends while
	// it reconnects.
	natsSrv, err := testagent.StartNATSCluster(1)
	if err != nil {
		return err
	}
	defer natsSrv.Shutdown()
	a, err := newAgent(dir, "density", func(c *config.Config) { c.NATS.URLs = natsSrv.URLs() })
	if err != nil {
		return err
	}
	defer cleanup(a)
	ctx := context.Background()
	rec, closeRec, err := recordRoutes(a)
	if err != nil {
		return err
	}
	defer closeRec()
	if err := update(results, func(r *Results) { r.Density, r.Restarts = nil, nil }); err != nil {
		return err
	}

	var guids []string
	startedS := 0.0 // starting all steps so far
	for _, n := range o.steps {
		more := make([]string, 0, n-len(guids))
		for i := len(guids); i < n; i++ {
			more = append(more, fmt.Sprintf("d-%03d", i))
		}
		dr := DensityResults{N: n, Conc: conc, MemoryMB: o.memoryMB, ProxyKind: a.Config.Proxy.Kind, ProxyOverheadMB: a.Config.Proxy.MemoryOverheadMB,
			HealthSeconds: time.Duration(a.Config.HealthInterval).Seconds()}
		// The event stream of the agent as it runs now: a restart of the
		// previous step ended the one before.
		stepCtx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		w, err := watchRoutable(stepCtx, a)
		if err != nil {
			return err
		}
		progress("density: starting %d more instances with proxies (%d in all), %d at a time", len(more), n, conc)
		stopProfile := asyncProfile(results, a, 20, dir, fmt.Sprintf("density-start-%d", n))
		t0 := time.Now()
		took, err := startMany(ctx, a, w, more, conc, o.memoryMB)
		stopWatch()
		if err != nil {
			return fmt.Errorf("start %d: %w", len(more), err)
		}
		startedS += time.Since(t0).Seconds()
		guids = append(guids, more...)
		dr.StartAllSeconds, dr.Started = startedS, len(more)
		dr.StartEach = dist(took)
		stopProfile()
		progress("density: %d routable after %.1f s of starts; settling 10 s", n, dr.StartAllSeconds)
		time.Sleep(10 * time.Second)
		if err := measureDensity(a, results, dir, guids, o.idle, &dr); err != nil {
			return err
		}
		if err := update(results, func(r *Results) { r.Density = append(r.Density, dr); delete(r.Errors, "density") }); err != nil {
			return err
		}
		// Each run is judged on its own: a restart's cost varies run to run.
		for i := range o.restarts {
			rr, err := restart(ctx, a, rec, guids)
			if err != nil {
				recordError(results, "restart", fmt.Errorf("%d instances, run %d: %w", n, i+1, err))
				return err
			}
			if err := update(results, func(r *Results) { r.Restarts = append(r.Restarts, *rr); delete(r.Errors, "restart") }); err != nil {
				return err
			}
		}
	}

	progress("density: deleting %d instances, %d at a time", len(guids), conc)
	d0 := time.Now()
	if err := deleteMany(ctx, a, guids, conc); err != nil {
		return err
	}
	secs := time.Since(d0).Seconds()
	return update(results, func(r *Results) { r.Density[len(r.Density)-1].DeleteAllSecond = secs })
}

// measureDensity fills dr with the agent's RSS, every proxy's memory and
// the idle agent's CPU with guids running.
func measureDensity(a *testagent.Agent, results, dir string, guids []string, idle time.Duration, dr *DensityResults) error {
	pid := a.Pid()
	rss, _ := procStatusKB(pid, "VmRSS")
	hwm, _ := procStatusKB(pid, "VmHWM")
	dr.AgentRSSMB, dr.AgentHWMMB = float64(rss)/1024, float64(hwm)/1024
	mem := newMemorySample()
	for _, g := range guids {
		pids, err := containerPids(a, g)
		if err != nil {
			return err
		}
		mem.add("/proc", classify("/proc", pids))
	}
	dr.Proxy, dr.App, dr.Init = mem.of(kindProxy), mem.of(kindApp), mem.of(kindInit)
	dr.OverheadPssMaxMB, dr.OverheadAnonMaxMB = maxOf(mem.overPss), maxOf(mem.overAnon)
	progress("density: agent RSS %.1f MB; %d proxies, Pss median %.1f MB max %.1f MB; %d apps; %d cellinits, Pss max %.1f MB",
		dr.AgentRSSMB, dr.Proxy.Count, dr.Proxy.PssMed, dr.Proxy.PssMax, dr.App.Count, dr.Init.Count, dr.Init.PssMax)

	if err := waitPoolFull(a, dr); err != nil {
		return err
	}
	progress("density: agent CPU while idle over %s", idle)
	c0, err := procCPU(pid)
	if err != nil {
		return err
	}
	p0, _ := procCPUPrecise(pid)
	i0 := time.Now()
	time.Sleep(idle)
	c1, err := procCPU(pid)
	if err != nil {
		return err
	}
	p1, _ := procCPUPrecise(pid)
	dr.IdleCPUPrecise = p1 - p0
	dr.IdleSeconds = time.Since(i0).Seconds()
	dr.IdleCPUSeconds = c1 - c0
	dr.IdleCPUPercent = 100 * dr.IdleCPUSeconds / dr.IdleSeconds
	progress("density: idle agent CPU %.2f%% of a core", dr.IdleCPUPercent)
	// A profile of the idle agent, taken after the measurement so that
	// profiling does not add to it.
	asyncProfile(results, a, 15, dir, fmt.Sprintf("density-idle-%d", len(guids)))()
	return nil
}

// waitPoolFull waits (up to poolRefillWait) until the agent's network
// pool holds network.pool_size claimable namespaces again, so that the
// idle window measures a cell with nothing left to do. The refill after
// a fill is the agent's own work since it makes veths and addresses
// in-process (before, the CNI plugin processes did it, outside the
// agent's CPU); its time and CPU are recorded apart.
func waitPoolFull(a *testagent.Agent, dr *DensityResults) error {
	w, err := waitPool(a, poolRefillWait)
	if err != nil {
		return err
	}
	dr.PoolRefillSeconds, dr.PoolRefillCPUSeconds, dr.PoolFull = w.seconds, w.cpuSeconds, w.full
	return nil
}

// poolWait is what waitPool saw.
type poolWait struct {
	seconds, cpuSeconds float64 // waited, and the agent's CPU meanwhile
	full                bool
}

// waitPool waits up to limit until the agent's network pool is full
// (pool_size claimable namespaces; at once without a pool).
func waitPool(a *testagent.Agent, limit time.Duration) (poolWait, error) {
	size := a.Config.Network.PoolSize
	if size <= 0 || a.Config.Network.Mode == "host" {
		return poolWait{full: true}, nil
	}
	pid := a.Pid()
	c0, err := procCPU(pid)
	if err != nil {
		return poolWait{}, err
	}
	t0 := time.Now()
	path := filepath.Join(a.Config.DataDir, "network", "pool.json")
	var w poolWait
	ready := 0
	for time.Since(t0) < limit {
		if ready = poolReady(path, time.Now()); ready >= size {
			w.full = true
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	c1, err := procCPU(pid)
	if err != nil {
		return poolWait{}, err
	}
	w.seconds, w.cpuSeconds = time.Since(t0).Seconds(), c1-c0
	progress("network pool %d of %d ready after %.1f s (agent CPU meanwhile %.2f s)", ready, size, w.seconds, w.cpuSeconds)
	return w, nil
}

// poolRefillWait bounds waitPoolFull: the refill yields to busy CPUs but
// prepares a namespace at least every 5 s, 24 in two minutes.
const poolRefillWait = 150 * time.Second

// poolReady counts the claimable slots in the agent's pool file (0 if it
// cannot be read).
func poolReady(path string, now time.Time) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var f struct {
		Slots []struct {
			Ready     bool      `json:"ready"`
			NotBefore time.Time `json:"not_before"`
		} `json:"slots"`
	}
	if json.Unmarshal(b, &f) != nil {
		return 0
	}
	n := 0
	for _, s := range f.Slots {
		if s.Ready && !now.Before(s.NotBefore) {
			n++
		}
	}
	return n
}

func restart(ctx context.Context, a *testagent.Agent, rec *routeRecorder, guids []string) (*RestartResults, error) {
	rr := &RestartResults{N: len(guids)}
	before, err := allPids(a, guids)
	if err != nil {
		return nil, err
	}
	progress("restart: kill -9 of the agent with %d instances, then start it again", len(guids))
	a.Kill9()
	t0 := time.Now()
	if err := a.Start(); err != nil {
		return nil, err
	}
	rr.APISeconds = time.Since(t0).Seconds()
	deadline := t0.Add(90 * time.Second)
	for {
		cs, err := a.Client.List(ctx)
		if err == nil {
			ok := 0
			for _, c := range cs {
				if c.State == executor.StateRunning && c.Routable {
					ok++
				}
			}
			rr.Adopted = ok
			if ok == len(guids) {
				rr.AdoptedSeconds = time.Since(t0).Seconds()
				break
			}
		}
		if time.Now().After(deadline) {
			return rr, fmt.Errorf("after restart only %d of %d running and routable within 90s", rr.Adopted, len(guids))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		reg := 0
		for _, g := range guids {
			if _, ok := rec.first(g, "router.register", t0); ok {
				reg++
			}
		}
		rr.Registered = reg
		if reg == len(guids) {
			rr.RoutesSeconds = time.Since(t0).Seconds()
			break
		}
		if time.Now().After(deadline) {
			return rr, fmt.Errorf("after restart only %d of %d re-registered within 90s", reg, len(guids))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Count registrations per guid over the first 5 s after the restart
	// (the regular re-emit interval is 20 s, so more than one means the
	// restart sent duplicates).
	if w := time.Until(t0.Add(5 * time.Second)); w > 0 {
		time.Sleep(w)
	}
	rr.CountWindowSeconds = time.Since(t0).Seconds()
	rr.RegistersPerGUIDMn = 1 << 30
	for _, g := range guids {
		c := rec.count(g, "router.register", t0)
		rr.RegistersPerGUIDMn = min(rr.RegistersPerGUIDMn, c)
		rr.RegistersPerGUIDMx = max(rr.RegistersPerGUIDMx, c)
	}
	after, err := allPids(a, guids)
	if err != nil {
		return nil, err
	}
	for _, g := range guids {
		b, a := before[g], after[g]
		if !sameInts(b[kindApp], a[kindApp]) || !sameInts(b[kindInit], a[kindInit]) {
			rr.AppRestarts++
		}
		if !sameInts(b[kindProxy], a[kindProxy]) {
			rr.ProxyRestarts++
		}
	}
	progress("restart: API in %.2f s, all running+routable in %.2f s, all re-registered in %.2f s, %d app restarts, %d proxy restarts",
		rr.APISeconds, rr.AdoptedSeconds, rr.RoutesSeconds, rr.AppRestarts, rr.ProxyRestarts)
	return rr, nil
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func sameInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func ctr(a *testagent.Agent, args ...string) (string, error) {
	cmd := exec.Command("ctr", append([]string{"--address", testagent.Socket(), "-n", a.Config.Containerd.Namespace}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// containerPids answers every process of guid's task: `ctr tasks ps`.
func containerPids(a *testagent.Agent, guid string) ([]int, error) {
	out, err := ctr(a, "tasks", "ps", guid)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, l := range strings.Split(out, "\n")[1:] {
		f := strings.Fields(l)
		if len(f) >= 1 {
			if p, err := strconv.Atoi(f[0]); err == nil {
				pids = append(pids, p)
			}
		}
	}
	sort.Ints(pids)
	return pids, nil
}

// allPids answers each guid's processes by kind.
func allPids(a *testagent.Agent, guids []string) (map[string]containerProcs, error) {
	m := map[string]containerProcs{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	var firstErr error
	for _, g := range guids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pids, err := containerPids(a, g)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				firstErr = err
				return
			}
			m[g] = classify("/proc", pids)
		}()
	}
	wg.Wait()
	return m, firstErr
}
