package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/proxyconfig"
)

// proc is one server process the benchmark started. Its waiter goroutine
// is owned by stop, which always waits for it.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // written by the waiter before done is closed
}

// startProc runs argv, pinned to cpus with taskset when cpus is set (taskset
// execs, so the pid is the server's), with its output in logPath. Pdeathsig
// takes the server down if the benchmark dies without stopping it.
func startProc(name, cpus, logPath string, argv ...string) (*proc, error) {
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after 5s, and waits for the exit.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail is the end of the process's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// waitFor polls ok every 5ms until it returns true, the process exits or
// the timeout passes.
func (p *proc) waitFor(what string, timeout time.Duration, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for i := 0; i < 100000 && time.Now().Before(deadline); i++ {
		if p.exited() {
			return fmt.Errorf("%s exited before %s: %v\n%s", p.name, what, p.err, p.tail())
		}
		if ok() {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("%s: no %s within %s\n%s", p.name, what, timeout, p.tail())
}

// Ports come from [20000, 32000): below the kernel's ephemeral range and
// outside the agent's host-port range (40000-59999), where tests on this
// machine install CNI DNAT rules that also catch 127.0.0.1.
func freePorts(n int) ([]uint16, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []uint16
	var err error
	for i := 0; i < 1000 && len(ports) < n; i++ {
		var ln net.Listener
		ln, err = net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000)))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, uint16(ln.Addr().(*net.TCPAddr).Port))
	}
	if len(ports) < n {
		return nil, fmt.Errorf("no free port in [20000, 32000): %w", err)
	}
	return ports, nil
}

// startApp runs demo-app on a free port; it answers "/" with a short body.
func startApp(binDir, cpus, dir string) (*proc, uint16, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, 0, err
	}
	p, err := startProc("demo-app", cpus, filepath.Join(dir, "demo-app.log"),
		filepath.Join(binDir, "demo-app"), strconv.Itoa(int(ports[0])))
	if err != nil {
		return nil, 0, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	err = p.waitFor("HTTP answer", 10*time.Second, func() bool { return httpOK("http://" + addr + "/") })
	if err != nil {
		p.stop()
		return nil, 0, err
	}
	return p, ports[0], nil
}

// startCellproxy writes the proxy files for one mapping into a fresh
// directory and runs the cellproxy binary the way the agent does
// (proxyconfig.Command), then waits for its admin /ready.
func startCellproxy(binDir, cpus, dir string, appPort uint16, k *pki) (*proc, string, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, "", err
	}
	cfg := proxyconfig.Config{ConfigDir: dir, DrainTimeout: time.Second}
	mappings := []proxyconfig.Mapping{{AppPort: appPort, ProxyPort: ports[0]}}
	if err := proxyconfig.Write(dir, cfg, mappings, ports[1], k.certPEM, k.keyPEM, "1"); err != nil {
		return nil, "", err
	}
	p, err := startProc("cellproxy", cpus, filepath.Join(dir, "cellproxy.log"),
		proxyconfig.Command(filepath.Join(binDir, "cellproxy"), cfg)...)
	if err != nil {
		return nil, "", err
	}
	readyURL := fmt.Sprintf("http://127.0.0.1:%d/ready", ports[1])
	if err := p.waitFor("admin /ready", 10*time.Second, func() bool { return httpOK(readyURL) }); err != nil {
		p.stop()
		return nil, "", err
	}
	return p, fmt.Sprintf("127.0.0.1:%d", ports[0]), nil
}

// startHaproxy writes haproxy.cfg and the PEM (certificate then key) into
// dir and runs haproxy in the foreground; ready once a TLS request works.
func startHaproxy(haproxyBin, cpus, dir string, appPort uint16, k *pki, maxconn int, ready func(addr string) error) (*proc, string, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, "", err
	}
	pemPath := filepath.Join(dir, "server.pem")
	if err := os.WriteFile(pemPath, append(append([]byte{}, k.certPEM...), k.keyPEM...), 0o600); err != nil {
		return nil, "", err
	}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	cfg := haproxyConfig(ports[0], appPort, pemPath, proxyconfig.CipherSuites, maxconn)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, "", err
	}
	p, err := startProc("haproxy", cpus, filepath.Join(dir, "haproxy.log"), haproxyBin, "-f", cfgPath, "-db")
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	if err := p.waitFor("TLS answer", 10*time.Second, func() bool { return ready(addr) == nil }); err != nil {
		p.stop()
		return nil, "", err
	}
	return p, addr, nil
}

func httpOK(url string) bool {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// rssKiB is VmRSS from /proc/<pid>/status.
func rssKiB(pid int) (int64, error) { return statusKiB(pid, "VmRSS") }

// statusKiB is a kB field of /proc/<pid>/status (VmRSS, RssAnon, VmHWM).
func statusKiB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == field+":" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("pid %d: no %s", pid, field)
}

// cpuTime is user+system time of a process from /proc/<pid>/stat, in the
// kernel's USER_HZ ticks (100 per second on Linux' ABI).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields count from after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("pid %d: bad stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("pid %d: short stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * (time.Second / 100), nil
}

// selfCPU is this process's user+system time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// parseCPUs reads taskset's list syntax ("0", "0,2", "1-3").
func parseCPUs(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("cpu list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// pinSelf restricts every thread of this process to cpus and sets
// GOMAXPROCS to match. sched_setaffinity works per thread and new threads
// inherit their creator's mask, so setting every existing thread (twice, for
// threads born during the first pass) pins the whole process.
func pinSelf(cpus []int) error {
	var set unix.CPUSet
	set.Zero()
	for _, c := range cpus {
		set.Set(c)
	}
	for pass := 0; pass < 2; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("pin thread %d: %w", tid, err)
			}
		}
	}
	runtime.GOMAXPROCS(len(cpus))
	return nil
}

// onlineCPUs counts the CPUs this machine has (not this process's mask).
func onlineCPUs() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.NumCPU()
	}
	return strings.Count(string(b), "\nprocessor\t") + boolInt(strings.HasPrefix(string(b), "processor\t"))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func commandOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// cpusBusy is the time the given CPUs were not idle (user, nice, system,
// irq, softirq and steal from /proc/stat), all processes together; with
// this benchmark's own CPU time subtracted it shows what neighbours took.
func cpusBusy(cpus []int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	want := map[string]bool{}
	for _, c := range cpus {
		want["cpu"+strconv.Itoa(c)] = true
	}
	var ticks int64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 9 || !want[f[0]] {
			continue
		}
		for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
			v, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				return 0, err
			}
			ticks += v
		}
	}
	return time.Duration(ticks) * (time.Second / 100), nil
}
