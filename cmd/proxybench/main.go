// Command proxybench measures cellproxy's data path on this machine, in one
// run, against the app reached directly and against haproxy terminating TLS
// with the same certificate, and prints a table:
//
//	direct     plain HTTP/1.1 to the app (the baseline)
//	cellproxy  the real bin/cellproxy, started from proxyconfig.Write's files
//	           the way the agent starts it (proxyconfig.Command)
//	haproxy    mode tcp, one thread, the same TLS settings (see haproxyConfig)
//
// The app is bin/demo-app in its own process. Servers (app and proxy) run
// pinned to -server-cpus with taskset; this process, the load generator,
// pins itself to -client-cpus with GOMAXPROCS matching, so generator and
// servers never share a CPU or a Go runtime. All traffic is on 127.0.0.1
// (demo-app takes only a port, so it binds it on every interface meanwhile).
// Other processes on the machine are not pinned away: the CPU accounting
// table shows how much of the pinned CPUs they took during each phase.
//
// Per round and target: RSS idle (after one request) and with -idle-conns
// idle TLS connections open (each has served one GET); keep-alive requests/s
// and latency over -conns connections; new connections/s, each a full TLS
// handshake (no resumption) plus one GET. Proxies are restarted every round;
// the table shows medians over -rounds. With -perf-dir an extra, unreported
// pass records each proxy under load with perf and prints the top symbols.
//
// Run it through scripts/bench-proxy, which builds the binaries first.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

type options struct {
	binDir     string
	haproxy    string
	rounds     int
	conns      int
	duration   time.Duration
	warmup     time.Duration
	hsWorkers  int
	hsDuration time.Duration
	idleConns  int
	serverCPUs string
	clientCPUs string
	perfDir    string
}

func main() {
	var o options
	flag.StringVar(&o.binDir, "bin", "bin", "directory holding cellproxy and demo-app")
	flag.StringVar(&o.haproxy, "haproxy", "haproxy", "haproxy binary")
	flag.IntVar(&o.rounds, "rounds", 3, "measurements per target; the table shows medians")
	flag.IntVar(&o.conns, "conns", 16, "concurrent kept-alive connections")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "keep-alive phase length")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured keep-alive load before each keep-alive phase")
	flag.IntVar(&o.hsWorkers, "hs-workers", 8, "workers opening new connections")
	flag.DurationVar(&o.hsDuration, "hs-duration", 5*time.Second, "new-connection phase length")
	flag.IntVar(&o.idleConns, "idle-conns", 1000, "idle TLS connections held for the RSS measurement")
	flag.StringVar(&o.serverCPUs, "server-cpus", "1", "CPUs for the app and the proxies (taskset -c syntax); empty: no pinning")
	flag.StringVar(&o.clientCPUs, "client-cpus", "0", "CPUs for this load generator; empty: no pinning")
	flag.StringVar(&o.perfDir, "perf-dir", "", "when set, profile each proxy with perf in an extra pass and keep perf.data here")
	flag.Parse()
	if err := noArgs(flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		os.Exit(2)
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		os.Exit(1)
	}
}

// noArgs refuses positional arguments: proxybench takes flags only, and
// one it ignored would measure something else than asked.
func noArgs(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected argument %q\nusage: proxybench [flags] (flags only; see proxybench -h)", args[0])
	}
	return nil
}

func (o options) validate() error {
	var errs []error
	if o.rounds < 1 || o.conns < 1 || o.hsWorkers < 1 || o.idleConns < 0 {
		errs = append(errs, errors.New("-rounds, -conns and -hs-workers must be positive, -idle-conns not negative"))
	}
	if o.duration <= 0 || o.hsDuration <= 0 || o.warmup < 0 {
		errs = append(errs, errors.New("durations must be positive"))
	}
	for _, s := range []string{o.serverCPUs, o.clientCPUs} {
		if s != "" {
			if _, err := parseCPUs(s); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// bench is one run's fixed parts.
type bench struct {
	o       options
	dir     string
	pki     *pki
	app     *proc
	appPort uint16
	tls     *tls.Config
	// serverCPUs and clientCPUs are the pinned CPU sets (nil: not pinned).
	serverCPUs, clientCPUs []int
}

func run(o options) error {
	var serverCPUs, clientCPUs []int
	if o.serverCPUs != "" {
		serverCPUs, _ = parseCPUs(o.serverCPUs)
	}
	if o.clientCPUs != "" {
		clientCPUs, _ = parseCPUs(o.clientCPUs)
		if err := pinSelf(clientCPUs); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "proxybench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	k, err := newPKI()
	if err != nil {
		return err
	}
	b := &bench{o: o, dir: dir, pki: k, serverCPUs: serverCPUs, clientCPUs: clientCPUs, tls: &tls.Config{
		RootCAs:    k.pool,
		ServerName: serverName,
		MinVersion: tls.VersionTLS12,
		// One key exchange for both proxies: Go's default would offer
		// X25519MLKEM768 first, which cellproxy accepts and haproxy's
		// OpenSSL 3.0 does not, so they would do different work.
		CurvePreferences: []tls.CurveID{tls.X25519},
	}}

	// Ctrl-C ends the run between phases (each phase is bounded), so the
	// servers are stopped; Pdeathsig is the backstop.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b.app, b.appPort, err = startApp(o.binDir, o.serverCPUs, dir)
	if err != nil {
		return err
	}
	defer b.app.stop()

	header(o)
	names := []string{"direct", "cellproxy", "haproxy"}
	results := map[string]*samples{}
	for _, n := range names {
		results[n] = &samples{}
	}
	for r := 0; r < o.rounds; r++ {
		for i := range names {
			// Rotate the order so drift (thermal, neighbours) spreads evenly.
			name := names[(i+r)%len(names)]
			if ctx.Err() != nil {
				return errors.New("interrupted")
			}
			fmt.Fprintf(os.Stderr, "round %d/%d: %s ...\n", r+1, o.rounds, name)
			if err := b.measure(name, r, results[name]); err != nil {
				return err
			}
		}
	}
	printTable(o, results)
	if o.perfDir != "" {
		return b.profile(ctx)
	}
	return nil
}

// header prints the machine and the exact command before any numbers.
func header(o options) {
	fmt.Printf("machine:   %d CPUs, %s; kernel %s\n", onlineCPUs(), cpuModel(), commandOutput("uname", "-r"))
	fmt.Printf("software:  %s; %s\n", runtime.Version(), commandOutput(o.haproxy, "-v"))
	fmt.Printf("command:   %s\n", strings.Join(os.Args, " "))
	fmt.Printf("pinning:   servers (demo-app, cellproxy, haproxy) on CPUs %q via taskset; generator on CPUs %q, GOMAXPROCS=%d\n",
		o.serverCPUs, o.clientCPUs, runtime.GOMAXPROCS(0))
	fmt.Printf("load:      keep-alive %d conns x %s (after %s warm-up); new conns %d workers x %s; %d idle TLS conns for RSS; %d rounds, medians\n\n",
		o.conns, o.duration, o.warmup, o.hsWorkers, o.hsDuration, o.idleConns, o.rounds)
}

// startProxy starts one proxy in its own directory and returns its target.
func (b *bench) startProxy(name, subdir string) (*proc, target, error) {
	dir := filepath.Join(b.dir, subdir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, target{}, err
	}
	t := target{name: name, tls: b.tls}
	var p *proc
	var err error
	switch name {
	case "cellproxy":
		p, t.addr, err = startCellproxy(b.o.binDir, b.o.serverCPUs, dir, b.appPort, b.pki)
	case "haproxy":
		ready := func(addr string) error { _, err := probe(target{name: name, addr: addr, tls: b.tls}); return err }
		p, t.addr, err = startHaproxy(b.o.haproxy, b.o.serverCPUs, dir, b.appPort, b.pki, 2*b.o.idleConns+1024, ready)
	default:
		err = fmt.Errorf("unknown proxy %q", name)
	}
	return p, t, err
}

// measure runs every phase once against one target and appends to s.
func (b *bench) measure(name string, round int, s *samples) error {
	if name == "direct" {
		t := target{name: name, addr: fmt.Sprintf("127.0.0.1:%d", b.appPort)}
		if s.tlsInfo == "" {
			info, err := probe(t)
			if err != nil {
				return err
			}
			s.tlsInfo = info
		}
		return b.loadPhases(t, nil, s)
	}
	p, t, err := b.startProxy(name, fmt.Sprintf("%s-%d", name, round))
	if err != nil {
		return err
	}
	defer p.stop()
	info, err := probe(t)
	if err != nil {
		return err
	}
	s.tlsInfo = info
	time.Sleep(200 * time.Millisecond) // let start-up work finish
	idle, err := rssKiB(p.pid())
	if err != nil {
		return err
	}
	s.rssIdle = append(s.rssIdle, float64(idle))
	if anon, err := statusKiB(p.pid(), "RssAnon"); err == nil {
		s.anonIdle = append(s.anonIdle, float64(anon))
	}
	if b.o.idleConns > 0 {
		release, err := holdConns(t, b.o.idleConns, b.o.hsWorkers)
		if err != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
		held, err := rssKiB(p.pid())
		if anon, err := statusKiB(p.pid(), "RssAnon"); err == nil {
			s.anonConns = append(s.anonConns, float64(anon))
		}
		release()
		if err != nil {
			return err
		}
		s.rssConns = append(s.rssConns, float64(held))
		time.Sleep(500 * time.Millisecond) // let the closes drain
	}
	if err := b.loadPhases(t, p, s); err != nil {
		return err
	}
	// The peak over the round: the held connections, the keep-alive load
	// and the handshakes (what a container's memory limit must allow).
	if hwm, err := statusKiB(p.pid(), "VmHWM"); err == nil {
		s.hwm = append(s.hwm, float64(hwm))
	}
	return nil
}

// loadPhases runs warm-up, keep-alive and new-connection load, accounting
// the CPU time of the proxy (when p is set), the app, the generator and
// everything else on the pinned CPUs.
func (b *bench) loadPhases(t target, p *proc, s *samples) error {
	if b.o.warmup > 0 {
		if _, err := keepAlive(t, b.o.conns, b.o.warmup); err != nil {
			return err
		}
	}
	var ka loadResult
	u, err := b.usageDuring(p, func() (err error) {
		ka, err = keepAlive(t, b.o.conns, b.o.duration)
		return err
	})
	if err != nil {
		return err
	}
	s.rps = append(s.rps, ka.rate())
	s.p50 = append(s.p50, float64(ka.pct(0.50)))
	s.p99 = append(s.p99, float64(ka.pct(0.99)))
	s.proxyCPUPerReq = append(s.proxyCPUPerReq, float64(u.proxy)/float64(ka.count))
	s.appCPUPerReq = append(s.appCPUPerReq, float64(u.app)/float64(ka.count))
	s.serverBusy = append(s.serverBusy, u.frac(u.proxy+u.app))
	s.genBusy = append(s.genBusy, u.frac(u.gen))
	s.neighbours = append(s.neighbours, u.neighbours())

	var nc loadResult
	u, err = b.usageDuring(p, func() (err error) {
		nc, err = newConns(t, b.o.hsWorkers, b.o.hsDuration)
		return err
	})
	if err != nil {
		return err
	}
	s.hs = append(s.hs, nc.rate())
	s.proxyCPUPerHS = append(s.proxyCPUPerHS, float64(u.proxy)/float64(nc.count))
	s.hsServerBusy = append(s.hsServerBusy, u.frac(u.proxy+u.app))
	s.hsGenBusy = append(s.hsGenBusy, u.frac(u.gen))
	s.hsNeighbours = append(s.hsNeighbours, u.neighbours())
	return nil
}

// usage is CPU time spent during one phase.
type usage struct {
	elapsed             time.Duration
	proxy, app, gen     time.Duration
	serverCPUs, genCPUs time.Duration // all processes on the pinned CPUs
	pinned              bool
}

func (u usage) frac(d time.Duration) float64 { return float64(d) / float64(u.elapsed) }

// neighbours is the share of the pinned CPUs that processes other than this
// benchmark's took (other engineers' builds and tests, say): the larger, the
// less the numbers say about the proxies. -1 without pinning.
func (u usage) neighbours() float64 {
	if !u.pinned {
		return -1
	}
	return u.frac(max(0, u.serverCPUs-u.proxy-u.app) + max(0, u.genCPUs-u.gen))
}

// usageDuring measures CPU time while f runs.
func (b *bench) usageDuring(p *proc, f func() error) (usage, error) {
	type snap struct{ proxy, app, gen, srv, cli time.Duration }
	take := func() (s snap, err error) {
		var errs [5]error
		s.app, errs[0] = cpuTime(b.app.pid())
		if p != nil {
			s.proxy, errs[1] = cpuTime(p.pid())
		}
		s.gen = selfCPU()
		if b.serverCPUs != nil && b.clientCPUs != nil {
			s.srv, errs[2] = cpusBusy(b.serverCPUs)
			s.cli, errs[3] = cpusBusy(b.clientCPUs)
		}
		return s, errors.Join(errs[:]...)
	}
	before, err := take()
	if err != nil {
		return usage{}, err
	}
	start := time.Now()
	if err := f(); err != nil {
		return usage{}, err
	}
	elapsed := time.Since(start)
	after, err := take()
	if err != nil {
		return usage{}, err
	}
	return usage{
		elapsed:    elapsed,
		proxy:      after.proxy - before.proxy,
		app:        after.app - before.app,
		gen:        after.gen - before.gen,
		serverCPUs: after.srv - before.srv,
		genCPUs:    after.cli - before.cli,
		pinned:     b.serverCPUs != nil && b.clientCPUs != nil,
	}, nil
}
