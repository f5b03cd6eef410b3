package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// samples holds one value per round for one target. Durations are kept as
// float64 nanoseconds, RSS in KiB, "busy" as a fraction of one CPU.
type samples struct {
	tlsInfo           string
	rps, hs           []float64
	p50, p99          []float64
	rssIdle, rssConns []float64
	// anonIdle and anonConns are RssAnon (the private heap and stacks,
	// what the proxy alone adds to its container's memory); hwm is VmHWM
	// at the end of the round (KiB).
	anonIdle, anonConns, hwm []float64
	proxyCPUPerReq           []float64
	appCPUPerReq             []float64
	proxyCPUPerHS            []float64
	serverBusy               []float64
	genBusy                  []float64
	hsGenBusy                []float64
	hsServerBusy             []float64
	neighbours               []float64
	hsNeighbours             []float64
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func dur(ns float64) string {
	d := time.Duration(ns)
	switch {
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	}
}

func mib(kib float64) string {
	if kib == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", kib/1024)
}

func spread(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(parts, "/")
}

// pcts lists per-round shares of a CPU as percentages.
func pcts(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		if x < 0 {
			return "-"
		}
		parts[i] = fmt.Sprintf("%.0f%%", 100*x)
	}
	return strings.Join(parts, ",")
}

func printTable(o options, res map[string]*samples) {
	d, c, h := res["direct"], res["cellproxy"], res["haproxy"]
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "target\treq/s\tp50\tp99\thandshakes/s\tRSS idle\tRSS @%d conns\tvs haproxy (req/s)\tvs direct (req/s)\t\n", o.idleConns)
	for _, name := range []string{"direct", "cellproxy", "haproxy"} {
		s := res[name]
		hs := fmt.Sprintf("%.0f", median(s.hs))
		if name == "direct" {
			hs = fmt.Sprintf("(plain conns/s %.0f)", median(s.hs))
		}
		fmt.Fprintf(w, "%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%.2fx\t%.2fx\t\n", name,
			median(s.rps), dur(median(s.p50)), dur(median(s.p99)), hs,
			mib(median(s.rssIdle)), mib(median(s.rssConns)),
			median(s.rps)/median(h.rps), median(s.rps)/median(d.rps))
	}
	w.Flush()

	fmt.Println("\nproxy memory (medians; RssAnon = private heap and stacks; peak = VmHWM over the round: held")
	fmt.Println("connections, keep-alive load and handshakes; VmRSS also counts the binary's shared, file-backed pages):")
	w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "target\tRssAnon idle\tRssAnon @%d conns\tpeak VmRSS\t\n", o.idleConns)
	for _, name := range []string{"cellproxy", "haproxy"} {
		s := res[name]
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t\n", name, mib(median(s.anonIdle)), mib(median(s.anonConns)), mib(median(s.hwm)))
	}
	w.Flush()

	fmt.Println("\nCPU accounting (medians; server CPU = proxy + app; 100% = one CPU; neighbours = CPU time other")
	fmt.Println("processes took on the pinned CPUs, per round: high values mean the row measured contention):")
	w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "target\tproxy CPU/req\tapp CPU/req\tserver CPU busy\tgenerator busy\tproxy CPU/handshake\tserver busy (handshakes)\tgenerator busy (handshakes)\tneighbours (keep-alive/handshakes)\treq/s per round\thandshakes/s per round\t\n")
	for _, name := range []string{"direct", "cellproxy", "haproxy"} {
		s := res[name]
		perReq, perHS := "-", "-"
		if name != "direct" {
			perReq, perHS = dur(median(s.proxyCPUPerReq)), dur(median(s.proxyCPUPerHS))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%.0f%%\t%.0f%%\t%s\t%.0f%%\t%.0f%%\t%s\t%s\t%s\t\n", name, perReq, dur(median(s.appCPUPerReq)),
			100*median(s.serverBusy), 100*median(s.genBusy), perHS, 100*median(s.hsServerBusy), 100*median(s.hsGenBusy),
			pcts(s.neighbours)+" / "+pcts(s.hsNeighbours), spread(s.rps), spread(s.hs))
	}
	w.Flush()

	fmt.Println("\nnegotiated:")
	for _, name := range []string{"direct", "cellproxy", "haproxy"} {
		fmt.Printf("  %-10s %s\n", name, res[name].tlsInfo)
	}

	rpsRatio := median(c.rps) / median(h.rps)
	p99Ratio := median(c.p99) / median(h.p99)
	fmt.Println("\ntargets (issue): cellproxy >= 0.8x haproxy req/s, p99 <= 1.5x haproxy's")
	fmt.Printf("  req/s: cellproxy/haproxy = %.2fx -> %s\n", rpsRatio, verdict(rpsRatio >= 0.8))
	fmt.Printf("  p99:   cellproxy/haproxy = %.2fx -> %s\n", p99Ratio, verdict(p99Ratio <= 1.5))
	worst := 0.0
	for _, s := range res {
		worst = max(worst, slices.Max(append(slices.Clone(s.neighbours), s.hsNeighbours...)))
	}
	if worst > 0.2 {
		fmt.Printf("  WARNING: other processes took up to %.0f%% of a CPU on the pinned CPUs during a phase;\n"+
			"  the per-round spread above shows how much that moved the numbers. Rerun on a quiet machine.\n", 100*worst)
	}
	for _, name := range []string{"direct", "cellproxy", "haproxy"} {
		if median(res[name].genBusy) > 0.9 {
			fmt.Printf("  note: the generator was %.0f%% busy against %s: that row may be generator-bound\n", 100*median(res[name].genBusy), name)
		}
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// profile runs one extra keep-alive and one new-connection phase per proxy
// with perf recording the proxy process, and prints each profile's top
// symbols. These runs are not in the table: perf costs the proxy CPU.
func (b *bench) profile(ctx context.Context) error {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return errors.New("-perf-dir: perf not found")
	}
	if err := os.MkdirAll(b.o.perfDir, 0o755); err != nil {
		return err
	}
	for _, name := range []string{"cellproxy", "haproxy"} {
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
		if err := b.profileOne(perf, name); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) profileOne(perf, name string) error {
	p, t, err := b.startProxy(name, name+"-perf")
	if err != nil {
		return err
	}
	defer p.stop()
	if _, err := keepAlive(t, b.o.conns, b.o.warmup+time.Second); err != nil {
		return err
	}
	phases := []struct {
		label string
		d     time.Duration
		load  func() error
	}{
		{"keepalive", b.o.duration, func() error { _, err := keepAlive(t, b.o.conns, b.o.duration); return err }},
		{"handshakes", b.o.hsDuration, func() error { _, err := newConns(t, b.o.hsWorkers, b.o.hsDuration); return err }},
	}
	for _, ph := range phases {
		data := filepath.Join(b.o.perfDir, fmt.Sprintf("%s-%s.perf.data", name, ph.label))
		secs := strconv.FormatFloat(ph.d.Seconds(), 'f', 1, 64)
		argv := []string{perf, "record", "-q", "-F", "1999", "-g", "-p", strconv.Itoa(p.pid()), "-o", data, "--", "sleep", secs}
		if b.o.clientCPUs != "" {
			argv = append([]string{"taskset", "-c", b.o.clientCPUs}, argv...)
		}
		rec, err := startProc("perf", "", data+".log", argv...)
		if err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond) // let perf attach
		loadErr := ph.load()
		select {
		case <-rec.done:
		case <-time.After(ph.d + 30*time.Second):
			rec.stop()
		}
		if loadErr != nil {
			return loadErr
		}
		if rec.err != nil {
			return fmt.Errorf("perf record: %v\n%s", rec.err, rec.tail())
		}
		out, err := exec.Command(perf, "report", "-i", data, "--stdio", "--no-children", "-g", "none",
			"--sort", "dso,symbol", "--percent-limit", "1.5").CombinedOutput()
		if err != nil {
			return fmt.Errorf("perf report: %v\n%s", err, out)
		}
		fmt.Printf("\nperf: %s under %s load (self time, >=1.5%%; data %s)\n", name, ph.label, data)
		n := 0
		for _, line := range strings.Split(string(out), "\n") {
			if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
				continue
			}
			fmt.Println("  " + strings.TrimRight(strings.TrimSpace(line), " -"))
			if n++; n >= 30 {
				break
			}
		}
	}
	return nil
}
