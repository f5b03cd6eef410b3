package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

// RotationResult: one wave of rotations of N instances (each rotates once,
// at a jittered 50-70% of identity.validity), with TLS load through their
// proxies.
type RotationResult struct {
	KeyType          string  `json:"key_type"`
	N                int     `json:"n"`
	ValiditySeconds  float64 `json:"validity_s"`
	StartAllSeconds  float64 `json:"start_all_s"`
	Rotations        int     `json:"rotations"`
	WaveSeconds      float64 `json:"wave_s"`
	WaveCPUSeconds   float64 `json:"wave_cpu_s"`
	IdleCPUPerSecond float64 `json:"idle_cpu_per_s"`
	// The network pool's refill after the starts, waited out before the
	// idle window (waitPool).
	PoolRefillSeconds    float64 `json:"pool_refill_s"`
	PoolRefillCPUSeconds float64 `json:"pool_refill_cpu_s"`
	CPUPerRotationMS     float64 `json:"cpu_per_rotation_ms"`
	IssuanceMeanMS       float64 `json:"issuance_mean_ms"`
	Issuances            float64 `json:"issuances"`
	LoadRate             int     `json:"load_rate"`
	Before               Load    `json:"before"`
	During               Load    `json:"during"`
	FailureSamples       string  `json:"failure_samples,omitempty"`
	RotationsFailed      int     `json:"rotation_failed_events"`
	UnconfirmedOrNote    string  `json:"note,omitempty"`
}

// Load is the outcome of the requests started in one window.
type Load struct {
	Seconds  float64 `json:"s"`
	Requests int     `json:"requests"`
	Failed   int     `json:"failed"`
	Latency  Dist    `json:"latency"`
}

func cmdRotation(args []string) error {
	fs := flag.NewFlagSet("rotation", flag.ExitOnError)
	results := fs.String("results", "results.json", "results file")
	n := fs.Int("n", 40, "instances")
	validity := fs.Duration("validity", 120*time.Second, "identity.validity (rotation at 50-70% of it)")
	keyTypes := fs.String("key-types", "ecdsa-p256,rsa-3072", "key types, one wave each")
	rate := fs.Int("rate", 100, "TLS requests per second through the proxies (new connection each)")
	cpu := fs.String("load-cpu", "1", "taskset CPU list for the load generator (empty: not pinned)")
	workDir := fs.String("dir", "", "work directory (default: a temporary one)")
	parseFlags(fs, args)
	dir, err := workdir(*workDir)
	if err != nil {
		return err
	}
	_ = update(*results, func(r *Results) { r.Rotation = nil })
	for _, kt := range strings.Split(*keyTypes, ",") {
		rr, err := rotation(*results, dir, kt, *n, *validity, *rate, *cpu)
		if err != nil {
			recordError(*results, "rotation "+kt, err)
			return fmt.Errorf("%s: %w", kt, err)
		}
		if err := update(*results, func(r *Results) {
			r.Rotation = append(r.Rotation, *rr)
			delete(r.Errors, "rotation "+kt)
		}); err != nil {
			return err
		}
	}
	return nil
}

func rotation(results, dir, kt string, n int, validity time.Duration, rate int, cpu string) (*RotationResult, error) {
	rr := &RotationResult{KeyType: kt, N: n, ValiditySeconds: validity.Seconds(), LoadRate: rate}
	a, err := newAgent(dir, "rot-"+kt, func(c *config.Config) {
		c.Identity.KeyType = kt
		c.Identity.Validity = config.Duration(validity)
	})
	if err != nil {
		return nil, err
	}
	defer cleanup(a)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := watchRoutable(ctx, a)
	if err != nil {
		return nil, err
	}
	var guids []string
	for i := 0; i < n; i++ {
		guids = append(guids, fmt.Sprintf("r-%02d", i))
	}
	progress("rotation %s: starting %d instances (validity %s)", kt, n, validity)
	// Follow rotations from before the first issuance.
	rot := newRotationWatcher()
	evs, err := a.Client.Events(ctx, a.LastSeq(ctx))
	if err != nil {
		return nil, err
	}
	go rot.follow(evs)
	t0 := time.Now()
	if _, err := startMany(ctx, a, w, guids, 10, 32); err != nil {
		return nil, err
	}
	rr.StartAllSeconds = time.Since(t0).Seconds()
	// The agent's issuance histogram observes the issuances at start only
	// (not rotations): their mean wall time.
	if sum, cnt := issuanceMetrics(a); cnt > 0 {
		rr.Issuances, rr.IssuanceMeanMS = cnt, 1000*sum/cnt
	}
	if rot.total() > 0 {
		return nil, fmt.Errorf("a rotation happened before all %d instances were routable (%.1f s): use a longer -validity", n, rr.StartAllSeconds)
	}

	// Load through every proxy, as a router would: TLS to
	// external_ip:host_tls_proxy_port, ServerName = guid, identity CA.
	targets := filepath.Join(dir, "targets-"+kt)
	var lines []string
	for _, g := range guids {
		c, err := a.Client.Get(ctx, g)
		if err != nil {
			return nil, err
		}
		if len(c.Ports) == 0 || c.Ports[0].HostTLSProxyPort == 0 {
			return nil, fmt.Errorf("%s has no TLS proxy port", g)
		}
		lines = append(lines, fmt.Sprintf("%s %s:%d", g, c.ExternalIP, c.Ports[0].HostTLSProxyPort))
	}
	if err := os.WriteFile(targets, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "load-"+kt+".txt")
	load, stdin, err := startLoad(targets, filepath.Join(a.Config.DataDir, "identity", "ca.crt"), out, rate, cpu)
	if err != nil {
		return nil, err
	}
	defer func() {
		if load.ProcessState == nil {
			stdin.Close()
			_ = load.Wait()
		}
	}()
	time.Sleep(3 * time.Second) // load warm-up
	// The idle rate below is subtracted from the wave's CPU: it must not
	// hold the network pool's refill after the starts, which is the
	// agent's own CPU with the in-process plumbing (the 11:44 run on
	// 2ec8304 subtracted more than the wave cost: -0.47 ms a rotation).
	// The first rotation comes at 50% of the validity at the earliest.
	pw, err := waitPool(a, time.Until(t0.Add(validity*45/100)))
	if err != nil {
		return nil, err
	}
	rr.PoolRefillSeconds, rr.PoolRefillCPUSeconds = pw.seconds, pw.cpuSeconds
	if !pw.full {
		rr.UnconfirmedOrNote = "the network pool was not full again before the idle window; its refill is in the idle rate"
	}
	pid := a.Pid()
	tA := time.Now()
	cpuA, err := procCPUPrecise(pid)
	if err != nil {
		return nil, err
	}
	progress("rotation %s: load running; waiting for the first rotation", kt)
	first, err := rot.waitTotal(1, t0.Add(validity))
	if err != nil {
		return nil, err
	}
	cpuR1, _ := procCPUPrecise(pid)
	stopProfile := asyncProfile(results, a, 20, dir, "rotation-"+kt)
	progress("rotation %s: first rotation %.1f s after the start; waiting for all %d", kt, first.Sub(t0).Seconds(), n)
	last, err := rot.waitAll(guids, t0.Add(validity))
	if err != nil {
		return nil, err
	}
	cpuB, _ := procCPUPrecise(pid)
	rr.Rotations = rot.total()
	stopProfile()
	time.Sleep(2 * time.Second)
	stdin.Close()
	if err := load.Wait(); err != nil {
		return nil, fmt.Errorf("load generator: %w", err)
	}

	rr.WaveSeconds = last.Sub(first).Seconds()
	if d := first.Sub(tA).Seconds(); d > 1 {
		rr.IdleCPUPerSecond = (cpuR1 - cpuA) / d
	} else {
		rr.UnconfirmedOrNote = "no idle window before the first rotation; CPU not corrected for idle"
	}
	rr.WaveCPUSeconds = (cpuB - cpuR1) - rr.IdleCPUPerSecond*rr.WaveSeconds
	// The first rotation happened before cpuR1 was read: count the wave's
	// rotations after it.
	if rr.Rotations > 1 {
		rr.CPUPerRotationMS = 1000 * rr.WaveCPUSeconds / float64(rr.Rotations-1)
	}
	rr.RotationsFailed = rot.failed()
	rr.Before, rr.During, rr.FailureSamples, err = readLoad(out, tA, first, last)
	if err != nil {
		return nil, err
	}
	progress("rotation %s: %d rotations in %.1f s, %.2f ms agent CPU each; requests before %d (%d failed, p99 %.1f ms), during %d (%d failed, p99 %.1f ms)",
		kt, rr.Rotations, rr.WaveSeconds, rr.CPUPerRotationMS, rr.Before.Requests, rr.Before.Failed, rr.Before.Latency.P99,
		rr.During.Requests, rr.During.Failed, rr.During.Latency.P99)
	return rr, nil
}

// rotationWatcher counts credentials_rotated events per guid.
type rotationWatcher struct {
	mu     sync.Mutex
	per    map[string]int // guarded by mu
	n      int            // guarded by mu
	fails  int            // guarded by mu
	last   time.Time      // guarded by mu
	change chan struct{}
}

func newRotationWatcher() *rotationWatcher {
	return &rotationWatcher{per: map[string]int{}, change: make(chan struct{}, 1)}
}

func (r *rotationWatcher) follow(evs <-chan executor.Event) {
	for ev := range evs {
		switch ev.Type {
		case executor.EventCredentialsRotated:
			r.mu.Lock()
			r.per[ev.GUID]++
			r.n++
			r.last = time.Now()
			r.mu.Unlock()
		case executor.EventCredentialsFailed:
			r.mu.Lock()
			r.fails++
			r.mu.Unlock()
		default:
			continue
		}
		select {
		case r.change <- struct{}{}:
		default:
		}
	}
}

func (r *rotationWatcher) total() int  { r.mu.Lock(); defer r.mu.Unlock(); return r.n }
func (r *rotationWatcher) failed() int { r.mu.Lock(); defer r.mu.Unlock(); return r.fails }

func (r *rotationWatcher) waitTotal(k int, deadline time.Time) (time.Time, error) {
	for {
		r.mu.Lock()
		n, at := r.n, r.last
		r.mu.Unlock()
		if n >= k {
			return at, nil
		}
		select {
		case <-r.change:
		case <-time.After(time.Until(deadline)):
			return time.Time{}, fmt.Errorf("%d rotations of %d expected by %s", n, k, deadline.Format(time.TimeOnly))
		}
	}
}

func (r *rotationWatcher) waitAll(guids []string, deadline time.Time) (time.Time, error) {
	for {
		r.mu.Lock()
		done := 0
		for _, g := range guids {
			if r.per[g] > 0 {
				done++
			}
		}
		at := r.last
		r.mu.Unlock()
		if done == len(guids) {
			return at, nil
		}
		select {
		case <-r.change:
		case <-time.After(time.Until(deadline)):
			return time.Time{}, fmt.Errorf("only %d of %d instances rotated by %s", done, len(guids), deadline.Format(time.TimeOnly))
		}
	}
}

// issuanceMetrics answers cellagent_credential_issuance_seconds sum and
// count from GET /metrics.
func issuanceMetrics(a *testagent.Agent) (sum, count float64) {
	resp, err := http.Get(a.API + "/metrics")
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "cellagent_credential_issuance_seconds_sum":
			sum = v
		case "cellagent_credential_issuance_seconds_count":
			count = v
		}
	}
	return sum, count
}

// startLoad runs `cellbench load` (this binary), pinned to cpu when
// taskset is there; closing stdin ends it.
func startLoad(targets, ca, out string, rate int, cpu string) (*exec.Cmd, io.WriteCloser, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	args := []string{self, "load", "-targets", targets, "-ca", ca, "-out", out, "-rate", strconv.Itoa(rate)}
	if cpu != "" {
		if ts, err := exec.LookPath("taskset"); err == nil {
			args = append([]string{ts, "-c", cpu}, args...)
		}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	return cmd, stdin, nil
}

// cmdLoad sends -rate requests per second (open loop, each on a new TLS
// connection, round robin over the targets) until stdin closes, then
// writes "start_unix_ns latency_ns ok|error" lines to -out.
func cmdLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	targetsFile := fs.String("targets", "", "lines of: guid host:port")
	caFile := fs.String("ca", "", "identity CA certificate")
	out := fs.String("out", "", "output file")
	rate := fs.Int("rate", 100, "requests per second")
	maxInFlight := fs.Int("max-in-flight", 256, "requests in flight at most (beyond: counted as failed)")
	parseFlags(fs, args)
	caPEM, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%s: no certificate", *caFile)
	}
	tb, err := os.ReadFile(*targetsFile)
	if err != nil {
		return err
	}
	type target struct {
		url    string
		client *http.Client
	}
	var targets []target
	for _, l := range strings.Split(strings.TrimSpace(string(tb)), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: f[0]}, DisableKeepAlives: true}
		targets = append(targets, target{url: "https://" + f[1] + "/", client: &http.Client{Transport: tr, Timeout: 5 * time.Second}})
	}
	if len(targets) == 0 {
		return fmt.Errorf("no targets")
	}
	type rec struct {
		start time.Time
		lat   time.Duration
		err   string
	}
	var (
		mu   sync.Mutex
		recs []rec
		wg   sync.WaitGroup
	)
	var inFlight atomic.Int64
	stop := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stop) }()
	tick := time.NewTicker(time.Second / time.Duration(*rate))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			wg.Wait()
			return writeLoad(*out, func(w *bufio.Writer) {
				for _, r := range recs {
					e := "ok"
					if r.err != "" {
						e = strings.ReplaceAll(r.err, "\n", " ")
					}
					fmt.Fprintf(w, "%d %d %s\n", r.start.UnixNano(), r.lat.Nanoseconds(), e)
				}
			})
		case <-tick.C:
		}
		t := targets[i%len(targets)]
		start := time.Now()
		if inFlight.Load() >= int64(*maxInFlight) {
			mu.Lock()
			recs = append(recs, rec{start: start, err: "over max in flight"})
			mu.Unlock()
			continue
		}
		inFlight.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer inFlight.Add(-1)
			resp, err := t.client.Get(t.url)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("status %s", resp.Status)
				}
			}
			r := rec{start: start, lat: time.Since(start)}
			if err != nil {
				r.err = err.Error()
			}
			mu.Lock()
			recs = append(recs, r)
			mu.Unlock()
		}()
	}
}

func writeLoad(path string, fn func(*bufio.Writer)) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fn(w)
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readLoad splits the load generator's records into before [from, wave)
// and during [wave, end].
func readLoad(path string, from, wave, end time.Time) (before, during Load, failures string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return before, during, "", err
	}
	defer f.Close()
	var bl, dl []time.Duration
	var samples []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 3)
		if len(parts) != 3 {
			continue
		}
		ns, _ := strconv.ParseInt(parts[0], 10, 64)
		lat, _ := strconv.ParseInt(parts[1], 10, 64)
		at := time.Unix(0, ns)
		var l *Load
		var lats *[]time.Duration
		switch {
		case at.Before(from) || at.After(end):
			continue
		case at.Before(wave):
			l, lats = &before, &bl
		default:
			l, lats = &during, &dl
		}
		l.Requests++
		if parts[2] != "ok" {
			l.Failed++
			if len(samples) < 5 {
				samples = append(samples, at.Format("15:04:05.000")+" "+parts[2])
			}
			continue
		}
		*lats = append(*lats, time.Duration(lat))
	}
	before.Seconds, during.Seconds = wave.Sub(from).Seconds(), end.Sub(wave).Seconds()
	before.Latency, during.Latency = dist(bl), dist(dl)
	return before, during, strings.Join(samples, "\n"), sc.Err()
}
