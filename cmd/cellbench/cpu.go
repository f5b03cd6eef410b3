package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// cellbench cpu: where the CPU of the concurrent start rounds goes, by
// process, per start, raw containerd+runc next to the agent's. It reads
// the round windows `cellbench start` recorded and the samples of a
// system-wide profile taken beside it:
//
//	perf record -a -F 499 -k CLOCK_REALTIME -o perf.data -- cellbench start ...
//	perf script -i perf.data -F comm,pid,time > perf.txt
//	cellbench cpu -results results.json -perf perf.txt -freq 499
//
// On 2 busy CPUs a round's p99 follows the CPU its starts need, so the
// agent's CPU per start against raw's is the floor of the p99 ratio
// (scripts/bench-cpu runs all of it).
func cmdCPU(args []string) error {
	fs := flag.NewFlagSet("cpu", flag.ExitOnError)
	results := fs.String("results", "results.json", "results file of a cellbench start run")
	perfText := fs.String("perf", "", "`perf script -F comm,pid,time` output of a perf record -k CLOCK_REALTIME beside that run")
	freq := fs.Float64("freq", 499, "perf record's -F")
	parseFlags(fs, args)
	if *perfText == "" || *freq <= 0 {
		return fmt.Errorf("cpu: want -perf FILE (perf script -F comm,pid,time output) and -freq > 0, as perf record's -F (see cellbench cpu -h)")
	}
	r, err := readResults(*results)
	if err != nil {
		return err
	}
	if r.Start == nil || len(r.Start.RawConcWindows) == 0 || len(r.Start.AgentConcWindows) == 0 {
		return fmt.Errorf("%s: no round windows (run cellbench start of this version first)", *results)
	}
	f, err := os.Open(*perfText)
	if err != nil {
		return err
	}
	defer f.Close()
	samples, err := readPerfSamples(f)
	if err != nil {
		return fmt.Errorf("%s: %w", *perfText, err)
	}
	raw := splitCPU(samples, r.Start.RawConcWindows, r.Start.Conc, *freq)
	agent := splitCPU(samples, r.Start.AgentConcWindows, r.Start.Conc, *freq)
	if st := r.Start; st.RawConcP99 > 0 {
		fmt.Printf("%d at once, p99 (median of %d rounds): raw %.0f ms, agent %.0f ms: %.2fx\n",
			st.Conc, len(st.AgentConcRound), st.RawConcP99, st.AgentConcP99, st.AgentConcP99/st.RawConcP99)
	}
	printCPUSplit(os.Stdout, raw, agent)
	return nil
}

// perfSample is one sample of a system-wide profile: the task's name and
// pid (0 = idle), and when, in Unix nanoseconds.
type perfSample struct {
	comm string
	pid  int
	at   int64
}

// readPerfSamples reads `perf script -F comm,pid,time` lines
// ("   envoy 23913 1796285979.540924: "). A name may hold spaces, so the
// fields are taken from the right.
func readPerfSamples(r io.Reader) ([]perfSample, error) {
	var out []perfSample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		j := strings.LastIndexByte(line[:max(i, 0)], ' ')
		if i < 0 || j < 0 {
			return nil, fmt.Errorf("line %d: want \"comm pid time:\", got %q", n, line)
		}
		pid, perr := strconv.Atoi(line[j+1 : i])
		secs, nanos, ok := strings.Cut(strings.TrimSuffix(line[i+1:], ":"), ".")
		s, serr := strconv.ParseInt(secs, 10, 64)
		ns, nerr := strconv.ParseInt((nanos + "000000000")[:9], 10, 64)
		if perr != nil || serr != nil || nerr != nil || !ok {
			return nil, fmt.Errorf("line %d: want \"comm pid time:\", got %q", n, line)
		}
		out = append(out, perfSample{comm: strings.TrimSpace(line[:j]), pid: pid, at: s*1e9 + ns})
	}
	return out, sc.Err()
}

// sampleKind names the process a sample's task belongs to: runc's
// container init ("runc:[2:INIT]") apart from runc, kernel threads
// without their CPU ("kworker/1:2" -> kworker), the demo app as app.
func sampleKind(comm string, pid int) string {
	switch {
	case pid == 0:
		return "idle"
	case strings.HasPrefix(comm, "runc:["):
		return "runc init"
	case comm == "server":
		return "app (demo-app)"
	case comm == "envoy":
		return "cellproxy" // bundled as <dir>/envoy, Diego's layout (proxyhook)
	}
	if k, _, ok := strings.Cut(comm, "/"); ok {
		return k
	}
	return comm
}

// cpuSplit is the CPU inside a set of round windows, per start.
type cpuSplit struct {
	starts  int
	seconds float64            // the windows' length
	busy    float64            // ms of CPU per start, idle left out
	util    float64            // busy share of all CPU samples
	byKind  map[string]float64 // ms per start
}

func splitCPU(samples []perfSample, windows [][2]int64, conc int, freq float64) cpuSplit {
	s := cpuSplit{starts: conc * len(windows), byKind: map[string]float64{}}
	for _, w := range windows {
		s.seconds += float64(w[1]-w[0]) / 1e9
	}
	all, idle := 0, 0
	for _, x := range samples {
		for _, w := range windows {
			if x.at < w[0] || x.at > w[1] {
				continue
			}
			all++
			k := sampleKind(x.comm, x.pid)
			if k == "idle" {
				idle++
				break
			}
			s.byKind[k] += 1000 / freq / float64(s.starts)
			break
		}
	}
	s.busy = float64(all-idle) * 1000 / freq / float64(s.starts)
	if all > 0 {
		s.util = float64(all-idle) / float64(all)
	}
	return s
}

func printCPUSplit(w io.Writer, raw, agent cpuSplit) {
	fmt.Fprintf(w, "CPU per start inside the concurrent rounds (%d raw starts in %.2f s, %d agent starts in %.2f s)\n",
		raw.starts, raw.seconds, agent.starts, agent.seconds)
	fmt.Fprintf(w, "CPUs busy: raw %.0f%%, agent %.0f%%\n\n", raw.util*100, agent.util*100)
	kinds := map[string]bool{}
	for k := range raw.byKind {
		kinds[k] = true
	}
	for k := range agent.byKind {
		kinds[k] = true
	}
	var names []string
	for k := range kinds {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := agent.byKind[names[i]], agent.byKind[names[j]]
		if a != b {
			return a > b
		}
		return names[i] < names[j]
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "process\traw ms/start\tagent ms/start\tagent - raw\t")
	var other [2]float64
	for _, k := range names {
		r, a := raw.byKind[k], agent.byKind[k]
		if r < 0.5 && a < 0.5 {
			other[0] += r
			other[1] += a
			continue
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%+.1f\t\n", k, r, a, a-r)
	}
	fmt.Fprintf(tw, "(others under 0.5)\t%.1f\t%.1f\t%+.1f\t\n", other[0], other[1], other[1]-other[0])
	ratio := 0.0
	if raw.busy > 0 {
		ratio = agent.busy / raw.busy
	}
	fmt.Fprintf(tw, "all\t%.1f\t%.1f\t%.2fx\t\n", raw.busy, agent.busy, ratio)
	tw.Flush()
}
