// Package testagent starts real cellagent daemons for integration tests:
// own data dir, own containerd namespace, own admin port, a busybox rootfs
// with the demo app, against the private containerd the test script
// started. It is test support code; nothing in the agent imports it.
package testagent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/secretfs"
)

// Enabled reports whether integration tests should run.
func Enabled() bool { return os.Getenv("CELLAGENT_INTEGRATION") == "1" && os.Geteuid() == 0 }

// Socket is the private containerd's socket.
func Socket() string {
	if s := os.Getenv("CELLAGENT_CTRD_SOCK"); s != "" {
		return s
	}
	return "/run/cellagent-containerd/containerd.sock"
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// BinDir answers where cellagent, cellctl, cellproxy and demo-app are,
// building them once when CELLAGENT_BIN_DIR is not set.
func BinDir() (string, error) {
	buildOnce.Do(func() {
		if d := os.Getenv("CELLAGENT_BIN_DIR"); d != "" {
			binDir = d
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		binDir, buildErr = os.MkdirTemp("", "cellagent-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/...", "./demo/...")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		// cellinit is C, as scripts/lib.sh build_binaries builds it.
		cc := exec.Command("cc", "-static", "-O2", "-Wall", "-o", filepath.Join(binDir, "cellinit"), "cmd/cellinit/cellinit.c")
		cc.Dir = root
		if out, err := cc.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("cc cellinit: %v\n%s", err, out)
		}
	})
	return binDir, buildErr
}

// FreePorts answers n distinct free TCP ports on 127.0.0.1.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		ports = append(ports, p)
	}
	return ports, nil
}

var (
	portsMu sync.Mutex
	handed  = map[int]bool{} // ports FreePort answered in this process
)

// FreePort answers a free TCP port on 127.0.0.1, never the same one twice
// in a test process (the kernel often hands the port just closed out
// again, and tests in host network mode bind them later).
func FreePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handed[p] {
			handed[p] = true
			return p, nil
		}
	}
	return 0, fmt.Errorf("no fresh free port after 100 tries")
}

// Agent is one running (or stopped) cellagent.
type Agent struct {
	Dir    string
	Config config.Config
	API    string
	Client *executor.HTTPClient
	Log    string

	cmd  *exec.Cmd
	done chan struct{}
}

// New prepares an agent in dir (rootfs, config) without starting it.
// Defaults for tests: host network mode, proxy off, a namespace of its own.
// CELLAGENT_PROXY_INIT=1 (or 0) sets proxy.init before modify runs, so a
// suite runs with cellinit as every proxied container's first process
// (or without); a test that sets proxy.init itself keeps its value, and
// Envoy keeps its runc exec.
func New(dir, name string, modify func(*config.Config)) (*Agent, error) {
	bins, err := BinDir()
	if err != nil {
		return nil, err
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := MakeRootfs(rootfs, filepath.Join(bins, "demo-app")); err != nil {
		return nil, err
	}
	ports, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	port, natsPort := ports[0], ports[1]
	cfg := config.DefaultConfig()
	cfg.CellID = name
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Containerd.Socket = Socket()
	cfg.Containerd.Namespace = "cellagent-it-" + name
	cfg.Listen.Admin = "127.0.0.1:" + strconv.Itoa(port)
	cfg.NATS.EmbeddedListen = "127.0.0.1:" + strconv.Itoa(natsPort)
	// The embedded server requires a user; tests connect with NATSURL.
	cfg.NATS.EmbeddedAuth = config.NATSAuth{User: "cellagent-it", Password: fmt.Sprintf("it-%d", time.Now().UnixNano())}
	cfg.PreloadedRootfs = map[string]string{"busybox": rootfs}
	cfg.Network.Mode = "host"
	// No prepared namespaces unless a test asks (network.pool_size): the
	// suites' inventories count every namespace as a container's.
	cfg.Network.PoolSize = 0
	cfg.Network.HostSingleTenant = true // the test is the only tenant
	// Keys on data_dir's filesystem unless a test asks (identity.tmpfs):
	// a tmpfs outlives the agent, and a test's temporary directory cannot
	// be removed while one is mounted in it (Cleanup unmounts it).
	cfg.Identity.Tmpfs = false
	cfg.Proxy.Enabled = false
	cfg.LogLevel = "debug"
	proxyInit, forceInit := os.LookupEnv("CELLAGENT_PROXY_INIT")
	if forceInit {
		on := proxyInit == "1"
		cfg.Proxy.Init = &on
	}
	if modify != nil {
		modify(&cfg)
	}
	if forceInit && cfg.Proxy.Kind == "envoy" {
		cfg.Proxy.Init = nil // Envoy keeps its runc exec
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "cellagent.json"), b, 0o600); err != nil {
		return nil, err
	}
	api := "http://" + cfg.Listen.Admin
	return &Agent{Dir: dir, Config: cfg, API: api, Client: executor.NewHTTPClient(api, nil),
		Log: filepath.Join(dir, "cellagent.log")}, nil
}

// NATSURL is where the agent registers routes (its embedded NATS unless
// nats.urls is set).
func (a *Agent) NATSURL() string {
	if len(a.Config.NATS.URLs) > 0 {
		return a.Config.NATS.URLs[0]
	}
	auth := a.Config.NATS.EmbeddedAuth
	if auth.User == "" {
		return "nats://" + a.Config.NATS.EmbeddedListen
	}
	return "nats://" + auth.User + ":" + auth.Password + "@" + a.Config.NATS.EmbeddedListen
}

// Start starts the daemon and waits until its API answers.
func (a *Agent) Start() error {
	bins, _ := BinDir()
	logf, err := os.OpenFile(a.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	a.cmd = exec.Command(filepath.Join(bins, "cellagent"), "-config", filepath.Join(a.Dir, "cellagent.json"))
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	a.done = make(chan struct{})
	go func() { _ = a.cmd.Wait(); logf.Close(); close(a.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := a.Client.State(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-a.done:
			b, _ := os.ReadFile(a.Log)
			return fmt.Errorf("cellagent exited at start:\n%s", tail(b, 3000))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("cellagent API did not answer within 30s")
}

// Kill9 kills the daemon with SIGKILL, as a crash would.
func (a *Agent) Kill9() {
	if a.cmd != nil && a.cmd.Process != nil {
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// Stop sends SIGTERM and waits for the exit.
func (a *Agent) Stop() error {
	if a.cmd == nil || a.cmd.Process == nil {
		return nil
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
		return nil
	case <-time.After(20 * time.Second):
		a.Kill9()
		return fmt.Errorf("cellagent did not exit within 20s of SIGTERM")
	}
}

// Exited is closed when the daemon process has exited.
func (a *Agent) Exited() <-chan struct{} { return a.done }

// Cleanup deletes every container through the API, then stops the agent.
func (a *Agent) Cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if cs, err := a.Client.List(ctx); err == nil {
		for _, c := range cs {
			_ = a.Client.Delete(ctx, c.GUID)
		}
	}
	_ = a.Stop()
	a.removePool()
	a.ReleaseSecretDirs()
}

// ReleaseSecretDirs unmounts the tmpfs mounts a stopped agent keeps for its
// next run (identity.tmpfs) once no container's files are left in them.
func (a *Agent) ReleaseSecretDirs() {
	for _, name := range []string{"credentials", "proxy"} {
		_, _ = secretfs.Release(filepath.Join(a.Config.DataDir, name))
	}
}

// removePool deletes the network namespaces a stopped agent keeps prepared
// for its next run (network.pool_size): a test's next agent has a data dir
// of its own and would not know them.
func (a *Agent) removePool() {
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), a.Config.Network.Name+"-pool.") {
			_ = exec.Command("ip", "netns", "delete", e.Name()).Run()
		}
	}
}

// Reconfigure rewrites the config file the next Start reads.
func (a *Agent) Reconfigure(modify func(*config.Config)) error {
	modify(&a.Config)
	if err := a.Config.Validate(); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(a.Config, "", "  ")
	return os.WriteFile(filepath.Join(a.Dir, "cellagent.json"), b, 0o600)
}

// LogText is the daemon's log so far.
func (a *Agent) LogText() string {
	b, _ := os.ReadFile(a.Log)
	return string(b)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// WaitState polls guid until it reaches state or timeout.
func (a *Agent) WaitState(guid string, state executor.State, timeout time.Duration) (executor.Container, error) {
	deadline := time.Now().Add(timeout)
	var last executor.Container
	for time.Now().Before(deadline) {
		c, err := a.Client.Get(context.Background(), guid)
		if err == nil {
			last = c
			if c.State == state {
				return c, nil
			}
			if c.State == executor.StateCompleted && state != executor.StateCompleted {
				return c, fmt.Errorf("%s completed instead of reaching %s: %+v", guid, state, c.RunResult)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return last, fmt.Errorf("%s did not reach %s within %s (last state %s)", guid, state, timeout, last.State)
}

// LastSeq is the newest event sequence number (to subscribe from now on).
func (a *Agent) LastSeq(ctx context.Context) uint64 {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	evs, err := a.Client.Events(ctx, 0)
	if err != nil {
		return 0
	}
	var last uint64
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				return last
			}
			last = ev.Seq
		case <-time.After(300 * time.Millisecond):
			return last
		}
	}
}

// Signal sends a signal by name ("USR1", "TERM") to the daemon.
func (a *Agent) Signal(name string) error {
	sig := map[string]syscall.Signal{"USR1": syscall.SIGUSR1, "TERM": syscall.SIGTERM, "INT": syscall.SIGINT}[name]
	if a.cmd == nil || a.cmd.Process == nil || sig == 0 {
		return fmt.Errorf("cannot send %s", name)
	}
	return a.cmd.Process.Signal(sig)
}
