package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cellagent/cellagent/config"
)

// cmdReport writes BENCHMARKS.md (markdown) on stdout from the results
// file and the outputs scripts/bench collected.
func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	results := fs.String("results", "results.json", "results file")
	proxyOut := fs.String("proxy", "", "scripts/bench-proxy output")
	credOut := fs.String("credbench", "", "go test -bench output of credmanager")
	command := fs.String("command", "scripts/bench", "the command that produced this")
	started := fs.String("started", "", "start time (RFC 3339)")
	runtimeS := fs.String("runtime", "", "how long the whole run took")
	notes := fs.String("notes", "", "notes of the run (load averages, disturbances)")
	parseFlags(fs, args)
	r, err := readResults(*results)
	if err != nil {
		return err
	}
	proxyText, _ := os.ReadFile(*proxyOut)
	credText, _ := os.ReadFile(*credOut)
	notesText, _ := os.ReadFile(*notes)
	rep := &report{r: r, proxy: string(proxyText), cred: string(credText), notes: string(notesText)}
	fmt.Print(rep.render(*command, *started, *runtimeS))
	return nil
}

type report struct {
	r           Results
	proxy, cred string
	notes       string
	b           strings.Builder
	missed      []string // profile names to show
}

type row struct {
	name, value, baseline, ratio, target string
	met                                  *bool
}

func yes(b bool) *bool { return &b }

func (rp *report) p(format string, args ...any) { fmt.Fprintf(&rp.b, format, args...) }

func (rp *report) render(command, started, runtimeS string) string {
	r := rp.r
	rp.p("# cellagent benchmarks\n\n")
	rp.p("Written by `scripts/bench` (issue 7). Every figure below was measured in the run described here,\n")
	rp.p("next to its baseline from the same run. Re-run with the command below; the file is rewritten.\n\n")
	date := started
	if date == "" {
		date = time.Now().UTC().Format(time.RFC3339)
	}
	rp.p("| | |\n|---|---|\n")
	rp.p("| date | %s |\n", date)
	rp.p("| command | `%s` |\n", command)
	if runtimeS != "" {
		rp.p("| run time | %s |\n", runtimeS)
	}
	rp.p("| machine | %d CPUs (nproc), %s, %s memory |\n", runtime.NumCPU(), cpuModel(), memTotal())
	rp.p("| kernel | %s |\n", strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")))
	rp.p("| software | %s; containerd %s; runc %s |\n\n", runtime.Version(), toolVersion("containerd", "--version"), toolVersion("runc", "--version"))

	var rows []row
	if s := r.Start; s != nil {
		rows = append(rows,
			row{"1. start to routable, one at a time (n=" + strconv.Itoa(s.AgentSeq.N) + "), p50",
				msf(s.AgentSeq.P50), "raw containerd create+start p50 " + msf(s.RawSeq.P50),
				fmt.Sprintf("%.2fx (+%s)", s.AgentSeq.P50/s.RawSeq.P50, msf(s.AgentSeq.P50-s.RawSeq.P50)),
				"<= raw + 60 ms", yes(s.AgentSeq.P50 <= s.RawSeq.P50+60)},
			row{"1. start to routable, one at a time, p99", msf(s.AgentSeq.P99), "raw p99 " + msf(s.RawSeq.P99),
				fmt.Sprintf("%.2fx", s.AgentSeq.P99/s.RawSeq.P99), "(none)", nil},
			row{fmt.Sprintf("1. start to routable, %d at once, p99 (median of %d rounds)", s.Conc, s.Rounds), msf(s.AgentConcP99),
				fmt.Sprintf("raw, %d at once, p99 %s", s.Conc, msf(s.RawConcP99)),
				fmt.Sprintf("%.2fx", s.AgentConcP99/s.RawConcP99), "<= 1.3x raw p99", yes(s.AgentConcP99 <= 1.3*s.RawConcP99)},
			row{fmt.Sprintf("1. start to routable, %d at once, p50", s.Conc), msf(s.AgentConcP50),
				"raw p50 " + msf(s.RawConcP50), fmt.Sprintf("%.2fx", s.AgentConcP50/s.RawConcP50), "(none)", nil})
		if !(s.AgentSeq.P50 <= s.RawSeq.P50+150) || !(s.AgentConcP99 <= 1.5*s.RawConcP99) {
			rp.missed = append(rp.missed, "start-concurrent")
		}
	}
	for _, d := range r.Density {
		rows = append(rows,
			row{fmt.Sprintf("2. agent RSS with %d instances", d.N), fmt.Sprintf("%.1f MB (peak %.1f MB)", d.AgentRSSMB, d.AgentHWMMB),
				"-", "-", "< 100 MB", yes(d.AgentRSSMB < 100)},
			row{fmt.Sprintf("2. memory per proxy (%d instances): Pss (shared binary pages split among the proxies); VmRSS; RssAnon", d.N), fmt.Sprintf("Pss median %.1f MB, max %.1f MB; VmRSS median %.1f MB, max %.1f MB; RssAnon median %.1f MB, max %.1f MB (%d proxies)",
				d.Proxy.PssMed, d.Proxy.PssMax, d.Proxy.RSSMed, d.Proxy.RSSMax, d.Proxy.AnonMed, d.Proxy.AnonMax, d.Proxy.Count),
				fmt.Sprintf("demo app (Go): Pss median %.1f MB, VmRSS median %.1f MB (%d); cellinit: Pss median %.1f MB, max %.1f MB, RssAnon max %.1f MB (%d)",
					d.App.PssMed, d.App.RSSMed, d.App.Count, d.Init.PssMed, d.Init.PssMax, d.Init.AnonMax, d.Init.Count),
				"-", "< 8 MB each (Pss max), one per instance", yes(d.Proxy.PssMax < 8 && d.Proxy.Count == d.N)},
			row{fmt.Sprintf("2. idle agent CPU with %d instances", d.N), fmt.Sprintf("%.2f%% of a core (%.2f CPU-s in %.0f s; schedstat %.3f CPU-s)", d.IdleCPUPercent, d.IdleCPUSeconds, d.IdleSeconds, d.IdleCPUPrecise),
				poolRefill(d), "-", "< 1% of a core", yes(d.IdleCPUPercent < 1)},
			row{fmt.Sprintf("2. time to start all %d (%d PUTs in flight)", d.N, d.Conc), fmt.Sprintf("%.1f s", d.StartAllSeconds),
				fmt.Sprintf("each PUT -> routable p50 %s, p99 %s (the %d started in this step)", msf(d.StartEach.P50), msf(d.StartEach.P99), d.Started), "-", "< 60 s", yes(d.StartAllSeconds < 60)})
		if d.AgentRSSMB >= 100 {
			rp.missed = append(rp.missed, fmt.Sprintf("density-start-%d", d.N))
		}
		if d.IdleCPUPercent >= 1 {
			rp.missed = append(rp.missed, fmt.Sprintf("density-idle-%d", d.N))
		}
	}
	if len(r.Density) > 0 {
		d := r.Density[len(r.Density)-1]
		row := row{fmt.Sprintf("2. memory reserved per proxy (proxy.memory_overhead_mb, %s) vs what the proxy and cellinit use together (%d instances, largest instance)", d.ProxyKind, d.N),
			fmt.Sprintf("%d MB reserved; used: Pss max %.1f MB, RssAnon max %.1f MB", d.ProxyOverheadMB, d.OverheadPssMaxMB, d.OverheadAnonMaxMB),
			fmt.Sprintf("Envoy's default: %d MB", config.ProxyMemoryOverheadMB["envoy"]), "-", "measured + headroom (judged in the notes; idle only, see section 5 for a proxy under load)", nil}
		if d.OverheadPssMaxMB > 0 {
			row.ratio = fmt.Sprintf("%.1fx the Pss max", float64(d.ProxyOverheadMB)/d.OverheadPssMaxMB)
		}
		rows = append(rows, row)
	}
	var ecdsa, rsa *RotationResult
	for i := range r.Rotation {
		switch r.Rotation[i].KeyType {
		case "ecdsa-p256":
			ecdsa = &r.Rotation[i]
		case "rsa-3072":
			rsa = &r.Rotation[i]
		}
	}
	if ecdsa != nil && rsa != nil && ecdsa.CPUPerRotationMS > 0 {
		ratio := rsa.CPUPerRotationMS / ecdsa.CPUPerRotationMS
		rows = append(rows, row{fmt.Sprintf("3. agent CPU per rotation, ecdsa-p256 (wave of %d)", ecdsa.N),
			fmt.Sprintf("%.2f ms", ecdsa.CPUPerRotationMS), fmt.Sprintf("rsa-3072: %.1f ms", rsa.CPUPerRotationMS),
			fmt.Sprintf("%.0fx cheaper", ratio), ">= 100x cheaper", yes(ratio >= 100)})
		if ratio < 100 {
			rp.missed = append(rp.missed, "rotation-ecdsa-p256")
		}
	}
	if e, ok := benchNs(rp.cred, "BenchmarkIssue/ecdsa-p256"); ok {
		if x, ok := benchNs(rp.cred, "BenchmarkIssue/rsa-3072"); ok {
			rows = append(rows, row{"3. issuance alone (key + signature, `go test -bench Issue ./credmanager/`), ecdsa-p256",
				msf(e / 1e6), "rsa-3072: " + msf(x/1e6), fmt.Sprintf("%.0fx cheaper", x/e), ">= 100x cheaper", yes(x/e >= 100)})
		}
	}
	for _, rr := range r.Rotation {
		ratio := 0.0
		if rr.Before.Latency.P99 > 0 {
			ratio = rr.During.Latency.P99 / rr.Before.Latency.P99
		}
		rows = append(rows, row{fmt.Sprintf("4. rotation under load, %s: failed requests during the wave", rr.KeyType),
			fmt.Sprintf("%d of %d; p99 %s", rr.During.Failed, rr.During.Requests, msf(rr.During.Latency.P99)),
			fmt.Sprintf("before: %d of %d failed; p99 %s", rr.Before.Failed, rr.Before.Requests, msf(rr.Before.Latency.P99)),
			fmt.Sprintf("p99 %.2fx", ratio), "0 failed", yes(rr.During.Failed == 0)})
	}
	if m := regexp.MustCompile(`req/s: cellproxy/haproxy = ([0-9.]+)x`).FindStringSubmatch(rp.proxy); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		rows = append(rows, row{"5. proxy data path, requests/s", fmt.Sprintf("%.2fx haproxy", v), "haproxy (same run)", fmt.Sprintf("%.2fx", v), ">= 0.8x", yes(v >= 0.8)})
	}
	if m := regexp.MustCompile(`p99:\s+cellproxy/haproxy = ([0-9.]+)x`).FindStringSubmatch(rp.proxy); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		rows = append(rows, row{"5. proxy data path, p99", fmt.Sprintf("%.2fx haproxy", v), "haproxy (same run)", fmt.Sprintf("%.2fx", v), "<= 1.5x", yes(v <= 1.5)})
	}
	for _, runs := range restartsByN(r.Restarts) {
		var adopted, routes []string
		allAdopted, allRoutes := len(runs) >= 3, len(runs) >= 3
		regMin, regMax, appRestarts, proxyRestarts := 1<<30, 0, 0, 0
		for i, x := range runs {
			adopted = append(adopted, fmt.Sprintf("run %d: %.2f s (API %.2f s)", i+1, x.AdoptedSeconds, x.APISeconds))
			routes = append(routes, fmt.Sprintf("%.2f s", x.RoutesSeconds))
			allAdopted = allAdopted && x.AdoptedSeconds < 3
			allRoutes = allRoutes && x.RoutesSeconds < 3
			regMin, regMax = min(regMin, x.RegistersPerGUIDMn), max(regMax, x.RegistersPerGUIDMx)
			appRestarts, proxyRestarts = appRestarts+x.AppRestarts, proxyRestarts+x.ProxyRestarts
		}
		rows = append(rows,
			row{fmt.Sprintf("6. agent restart (kill -9, %d instances, %d runs): all running + routable", runs[0].N, len(runs)), strings.Join(adopted, "; "),
				"-", "-", "< 3 s in each of 3 runs", yes(allAdopted)},
			row{fmt.Sprintf("6. agent restart (%d instances): all routes re-sent (router.register per guid)", runs[0].N), fmt.Sprintf("%s; %d-%d registers per guid in the first 5 s",
				strings.Join(routes, ", "), regMin, regMax), "-", "-", "< 3 s in each of 3 runs", yes(allRoutes)},
			row{fmt.Sprintf("6. agent restart (%d instances): app restarts (app and cellinit pids before/after), all runs", runs[0].N), fmt.Sprintf("%d (proxy processes changed: %d)", appRestarts, proxyRestarts),
				"-", "-", "0", yes(appRestarts == 0)})
	}
	if x := r.Routes; x != nil {
		rows = append(rows,
			row{"7. routable event -> router.register received, p99", fmt.Sprintf("%s (p50 %s)", msf(x.RegisterAfterRoutable.P99), msf(x.RegisterAfterRoutable.P50)),
				"-", "-", "< 50 ms", yes(x.RegisterAfterRoutable.P99 < 50)},
			row{"7. stop request -> router.unregister received, p99", fmt.Sprintf("%s (p50 %s)", msf(x.UnregisterAfterStop.P99), msf(x.UnregisterAfterStop.P50)),
				"-", "-", "< 50 ms", yes(x.UnregisterAfterStop.P99 < 50)},
			row{"7. unregister before the app's SIGTERM", fmt.Sprintf("%d of %d stops; lead min %s, p50 %s", x.UnregisterFirst, x.Stops, msf(x.MinLeadMS), msf(x.UnregisterLead.P50)),
				"-", "-", "always", yes(x.UnregisterFirst == x.Stops && x.Stops > 0)})
	}

	rp.p("## Summary\n\n")
	rp.p("| measurement | cellagent | baseline (same run) | ratio | target | met |\n|---|---|---|---|---|---|\n")
	met, missed := 0, 0
	for _, w := range rows {
		m := "-"
		if w.met != nil {
			if *w.met {
				m, met = "yes", met+1
			} else {
				m, missed = "**NO**", missed+1
			}
		}
		rp.p("| %s | %s | %s | %s | %s | %s |\n", w.name, w.value, w.baseline, w.ratio, w.target, m)
	}
	rp.p("\n%d targets met, %d missed.\n\n", met, missed)
	if busy := maxLoad(rp.notes); busy > float64(runtime.NumCPU()) {
		rp.p("**The machine was busy during this run**: a 1-minute load average up to %.1f on %d CPUs when a step started\n", busy, runtime.NumCPU())
		rp.p("(other work beside the bench; see Run notes). Baselines were measured in the same run under the same load, but\n")
		rp.p("latencies and their spread are worse than on a quiet machine; CPU-seconds and memory figures are affected least.\n\n")
	}
	if len(r.Errors) > 0 {
		rp.p("**Steps that failed in this run** (their figures are missing above):\n\n")
		for _, k := range sortedKeys(r.Errors) {
			rp.p("- %s: `%s`\n", k, firstLine(r.Errors[k]))
		}
		rp.p("\n")
	}
	rp.details()
	if strings.TrimSpace(rp.notes) != "" {
		rp.p("## Run notes\n\nOther work on the machine skews a 2-core benchmark; the bench records the load average when\n")
		rp.p("each step starts (the bench itself idles between steps) and whether its containerd restarted during a step:\n\n```\n%s\n```\n", strings.TrimSpace(rp.notes))
	}
	return rp.b.String()
}

func (rp *report) details() {
	r := rp.r
	rp.p("## How each figure is measured\n\n")
	rp.p("All agents run with bridge networking (CNI network `cellagentbm`, bridge `cellagentbm0`, `10.254.144.0/22`,\n")
	rp.p("host ports 49000-50999), a containerd namespace of their own, identity credentials and cellproxy in every\n")
	rp.p("container, log level info; the app is the demo app (`/app/server 8080`, tcp check, one route). One agent\n")
	rp.p("runs at a time; each deletes its containers before the next step.\n\n")
	if s := r.Start; s != nil {
		rp.p("### 1. Start to routable\n\n")
		rp.p("PUT `/v1/containers/{guid}` -> the `container_routable_changed` event with `routable=true` read from\n")
		rp.p("`/v1/events` (subscribed before the PUT). Raw baseline: the agent's containerd adapter alone (snapshot\n")
		rp.p("prepare from the same committed rootfs, container create, task start; host network, no CNI, no credentials,\n")
		rp.p("no proxy, nothing waits for the app to listen). One at a time: %d starts after one warm-up, each stopped and\n", s.AgentSeq.N)
		rp.p("deleted before the next. Concurrently: %d rounds of %d PUTs at once (raw: %d create+starts at once); the\n", s.Rounds, s.Conc, s.Conc)
		rp.p("summary shows the median over rounds of each round's p50/p99 (with %d samples per round the p99 is the round's maximum).\n", s.Conc)
		if len(s.SettledMS) > 0 {
			rp.p("The rounds alternate, raw round 1, agent round 1, raw round 2, ..., each once the CPUs were at least %.0f%% idle\n", settleIdle*100)
			rp.p("over %s (waited %s ms, at most %s): both sides of a pair see the same machine.\n", settleSample, joinMS(s.SettledMS), settleMax)
		}
		rp.p("\n")
		rp.p("| | n | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|\n")
		rp.distRow("raw, one at a time", s.RawSeq)
		rp.distRow("agent, one at a time", s.AgentSeq)
		for i, d := range s.RawConcRounds {
			rp.distRow(fmt.Sprintf("raw, %d at once, round %d", s.Conc, i+1), d)
		}
		for i, d := range s.AgentConcRound {
			rp.distRow(fmt.Sprintf("agent, %d at once, round %d", s.Conc, i+1), d)
		}
		rp.p("\n")
		if len(s.Timeline) > 0 {
			rp.p("Where the time of the last one-at-a-time start went (its events from `GET /v1/containers/{guid}/explain` and the agent's\nlog lines about it, ms after the PUT):\n\n```\n%s\n```\n\n", strings.Join(s.Timeline, "\n"))
		}
		if len(s.ConcTimeline) > 0 {
			rp.p("The slowest start of the last round of %d at once:\n\n```\n%s\n```\n\n", s.Conc, strings.Join(s.ConcTimeline, "\n"))
		}
		rp.profile("start-concurrent", "agent CPU profile during the concurrent rounds (10 s)")
	}
	if len(r.Density) > 0 {
		d, last := r.Density[0], r.Density[len(r.Density)-1]
		rp.p("### 2. Density\n\n")
		rp.p("Steps of %s instances on one agent (memory_mb %d each, proxy overhead %d), each step starting only the new ones,\n", stepList(r.Density), d.MemoryMB, d.ProxyOverheadMB)
		rp.p("%d PUTs at a time; the start time of N adds up the steps' starts. After all were routable and\n", d.Conc)
		rp.p("10 s of settling: agent VmRSS from `/proc/<pid>/status`; each container's processes from `ctr -n NS tasks ps`,\n")
		rp.p("told apart by their executable (`/proc/<pid>/exe`): `%s` is cellinit, `%s` the proxy, anything else the app.\n", initExe, proxyExe)
		rp.p("The proxy's memory limit share is proxy.memory_overhead_mb; cellinit runs in the same cgroup, so the reserved row\n")
		rp.p("compares it with the proxy and cellinit together. VmRSS counts the proxy's static binary pages in full\n")
		rp.p("in every proxy although the page cache holds them once; Pss (`/proc/<pid>/smaps_rollup`) splits them among the\n")
		rp.p("processes mapping them, so the target is judged on Pss; RssAnon is the private heap and stacks alone.\n")
		rp.p("Idle CPU: utime+stime of the agent from `/proc/<pid>/stat` over %.0f s with all instances running\n", d.IdleSeconds)
		rp.p("(health checks every %.0f s, the agent's default `health_check_interval`: a ClientHello answered by the proxy\n", d.HealthSeconds)
		rp.p("per instance, which also proves the app accepts; the disk use every other round; route re-emits every 20 s),\n")
		rp.p("no profiling during that window. Then the kill -9 restarts of section 6, then the next step.\n")
		rp.p("Deleting all %d afterwards took %.1f s.\n\n", last.N, last.DeleteAllSecond)
		for _, x := range r.Density {
			rp.profile(fmt.Sprintf("density-start-%d", x.N), fmt.Sprintf("agent CPU profile while starting the step to %d (first 20 s)", x.N))
			rp.profile(fmt.Sprintf("density-idle-%d", x.N), fmt.Sprintf("agent CPU profile while idle with %d (15 s, after the idle measurement)", x.N))
		}
	}
	if len(r.Rotation) > 0 {
		rp.p("### 3 and 4. Rotation cost and rotation under load\n\n")
		rp.p("One agent per key type with `identity.validity` short enough that every instance rotates once in a window\n")
		rp.p("(rotation at a jittered 50-70%% of the validity), none before all are routable. Agent CPU (sum of `/proc/<pid>/task/*/schedstat`, ns) is read\n")
		rp.p("at the start of the load, at the first `credentials_rotated` event and when every instance has rotated; the\n")
		rp.p("agent's own rate before the first rotation (idle + health checks) is subtracted from the wave's CPU, which is then\n")
		rp.p("divided by the rotations after the first. It covers everything the agent does for a rotation: key generation,\n")
		rp.p("signing, atomic file swap with fsyncs, and confirming the serial the proxy serves over TLS. Load: an open-loop\n")
		rp.p("generator (`cellbench load`, a separate process pinned with `taskset -c 1`) sends the given rate of HTTPS\n")
		rp.p("requests, each on a new TLS connection (so every request handshakes with the certificate served at that moment),\n")
		rp.p("round robin over all instances, to external_ip:host_tls_proxy_port with ServerName = guid and the identity CA\n")
		rp.p("as the only root. 'before' = requests started between the load's warm-up and the first rotation; 'during' =\n")
		rp.p("from the first rotation to the last.\n\n")
		rp.p("| key type | instances | validity | start all | rotations | wave | wave CPU (idle subtracted) | CPU / rotation | issuance at start, mean wall (metrics) | load | before: req / failed / p50 / p99 | during: req / failed / p50 / p99 | rotation failures |\n")
		rp.p("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, x := range r.Rotation {
			rp.p("| %s | %d | %.0f s | %.1f s | %d | %.1f s | %.3f s | %.2f ms | %.2f ms (%.0f) | %d req/s | %d / %d / %s / %s | %d / %d / %s / %s | %d |\n",
				x.KeyType, x.N, x.ValiditySeconds, x.StartAllSeconds, x.Rotations, x.WaveSeconds, x.WaveCPUSeconds, x.CPUPerRotationMS,
				x.IssuanceMeanMS, x.Issuances, x.LoadRate, x.Before.Requests, x.Before.Failed, msf(x.Before.Latency.P50), msf(x.Before.Latency.P99),
				x.During.Requests, x.During.Failed, msf(x.During.Latency.P50), msf(x.During.Latency.P99), x.RotationsFailed)
		}
		rp.p("\n")
		for _, x := range r.Rotation {
			if x.FailureSamples != "" {
				rp.p("Failed requests (%s, first few):\n\n```\n%s\n```\n\n", x.KeyType, x.FailureSamples)
			}
			if x.UnconfirmedOrNote != "" {
				rp.p("Note (%s): %s\n\n", x.KeyType, x.UnconfirmedOrNote)
			}
		}
		if rp.cred != "" {
			rp.p("Issuance alone, `go test -run '^$' -bench 'GenerateKey|Issue' ./credmanager/` in the same run (Issue = key\n")
			rp.p("generation + signing; IssueAndWrite adds the files and fsyncs):\n\n```\n%s\n```\n\n", strings.TrimSpace(rp.cred))
		}
		for _, x := range r.Rotation {
			rp.profile("rotation-"+x.KeyType, "agent CPU profile during the "+x.KeyType+" wave (20 s from the first rotation)")
		}
	}
	if rp.proxy != "" {
		rp.p("### 5. Proxy data path\n\n`scripts/bench-proxy` (cmd/proxybench), verbatim:\n\n```\n%s\n```\n\n", strings.TrimSpace(rp.proxy))
	}
	if runs := r.Restarts; len(runs) > 0 {
		rp.p("### 6. Agent restart\n\n")
		rp.p("At each density step, %d times one after the other, each run judged on its own.\n", len(restartsByN(runs)[0]))
		rp.p("With all instances of the step running and routable: task pids (`ctr tasks ls`, `ctr tasks ps`) recorded, the\n")
		rp.p("agent killed with SIGKILL and started again with the same config; times from the new process's start: its API\n")
		rp.p("answering, `GET /v1/containers` showing all of them running and routable (polled every 20 ms), and a\n")
		rp.p("`router.register` for every guid received on NATS after the kill. Pids compared afterwards. This agent's NATS\n")
		rp.p("is an external nats-server (run inside cellbench, as production's NATS is outside the agent) so that it survives\n")
		rp.p("the kill: with the embedded default the kill takes the server down and a subscriber reconnecting would miss the\n")
		rp.p("restarted agent's first registrations.\n\n")
	}
	if x := r.Routes; x != nil {
		rp.p("### 7. Route latency\n\n")
		rp.p("During the %d one-at-a-time starts of 1: NATS subscribed to `router.register`/`router.unregister` before the\n", x.Stops)
		rp.p("PUT; register latency = receipt of the first `router.register` for the guid minus the `time` of its routable\n")
		rp.p("event (both clocks are this machine's). Then `POST .../stop`: unregister latency = receipt of the first\n")
		rp.p("`router.unregister` minus the stop request; lead = the app's `got SIGTERM at <unixnano>` log line minus that receipt.\n\n")
		rp.p("| | n | p50 | p90 | p99 | max | min |\n|---|---|---|---|---|---|---|\n")
		for _, z := range []struct {
			n string
			d Dist
		}{{"routable -> register", x.RegisterAfterRoutable}, {"stop -> unregister", x.UnregisterAfterStop}, {"unregister lead over SIGTERM", x.UnregisterLead}} {
			rp.p("| %s | %d | %s | %s | %s | %s | %s |\n", z.n, z.d.N, msf(z.d.P50), msf(z.d.P90), msf(z.d.P99), msf(z.d.Max), msf(z.d.Min))
		}
		if x.NegativeRegister > 0 {
			rp.p("\n%d of %d registrations were received before the routable event's timestamp (negative latency): the agent\n", x.NegativeRegister, x.RegisterAfterRoutable.N)
			rp.p("publishes `router.register` and then stamps and publishes the event.\n")
		}
		rp.p("\n")
	}
}

func (rp *report) distRow(name string, d Dist) {
	rp.p("| %s | %d | %s | %s | %s | %s |\n", name, d.N, msf(d.P50), msf(d.P90), msf(d.P99), msf(d.Max))
}

// profile prints a profile when its target was missed.
func (rp *report) profile(name, title string) {
	text, ok := rp.r.Profiles[name]
	if !ok {
		return
	}
	show := false
	for _, m := range rp.missed {
		show = show || m == name
	}
	if !show {
		return
	}
	rp.p("Target missed; %s, `go tool pprof -top -cum` (cumulative: read the cellagent frames top down):\n\n```\n%s\n```\n\n", title, strings.TrimSpace(text))
}

func msf(v float64) string {
	if v >= 1000 || v <= -1000 {
		return fmt.Sprintf("%.2f s", v/1000)
	}
	if v < 10 && v > -10 {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func sortedKeys(m map[string]string) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.ReplaceAll(s, "|", "/")
}

func readFile(p string) string { b, _ := os.ReadFile(p); return string(b) }

func cpuModel() string {
	for _, l := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	for _, l := range strings.Split(readFile("/proc/meminfo"), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.Atoi(f[0])
				return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return "unknown"
}

func toolVersion(name string, args ...string) string {
	out, err := execOutput(name, args...)
	if err != nil {
		return "unknown"
	}
	return firstLine(strings.TrimSpace(out))
}

func execOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	return string(out), err
}

// benchNs answers the ns/op of a go test -bench line named name (with
// its -GOMAXPROCS suffix).
func benchNs(out, name string) (float64, bool) {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && strings.HasPrefix(f[0], name+"-") && f[3] == "ns/op" {
			v, err := strconv.ParseFloat(f[2], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// maxLoad answers the largest 1-minute load average in the notes' "load
// average at start A B C" lines.
func maxLoad(notes string) float64 {
	m := 0.0
	for _, l := range strings.Split(notes, "\n") {
		_, rest, ok := strings.Cut(l, "load average at start ")
		if !ok {
			continue
		}
		if f := strings.Fields(rest); len(f) > 0 {
			v, _ := strconv.ParseFloat(f[0], 64)
			m = max(m, v)
		}
	}
	return m
}

// restartsByN groups the restart runs by instance count, in order.
func restartsByN(runs []RestartResults) [][]RestartResults {
	var out [][]RestartResults
	for _, x := range runs {
		if len(out) == 0 || out[len(out)-1][0].N != x.N {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], x)
	}
	return out
}

// stepList is "250 then 500".
func stepList(ds []DensityResults) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, strconv.Itoa(d.N))
	}
	return strings.Join(parts, " then ")
}

// poolRefill says what ran before the idle window: the network pool's
// refill after the starts (waitPoolFull).
func poolRefill(d DensityResults) string {
	if !d.PoolFull {
		return fmt.Sprintf("measured with the network pool not yet full after %.0f s of refill (agent CPU %.2f s)", d.PoolRefillSeconds, d.PoolRefillCPUSeconds)
	}
	return fmt.Sprintf("measured once the network pool was full again: its refill took %.1f s, agent CPU %.2f s", d.PoolRefillSeconds, d.PoolRefillCPUSeconds)
}

// joinMS prints milliseconds as "12, 340, 5".
func joinMS(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(s, ", ")
}
