package proxyhook

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/credmanager"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/proxyconfig"
)

const (
	// AssetsDir is Diego's mount point of the proxy's directory (the rep's
	// container_proxy_path, holding envoy and its libraries).
	AssetsDir = "/etc/cf-assets/envoy"
	// DirBinaryPath is the proxy executable in a mounted AssetsDir, Diego's
	// path.
	DirBinaryPath = AssetsDir + "/envoy"
	// BinaryPath is where a lone proxy executable (the bundled cellproxy)
	// is mounted: AssetsDir itself, the mount point existing rootfses and
	// running containers have (scripts/lib.sh make_rootfs creates it as a
	// file).
	BinaryPath = AssetsDir
	execID     = "cellagent-proxy"
	guidKey    = "container-guid"
)

// Config configures the hook.
type Config struct {
	// HostBinary is the proxy on the host: an executable (cellproxy or
	// Envoy), mounted alone at BinaryPath, or, as Diego lays Envoy out, a
	// directory holding "envoy" (and whatever it needs), mounted at
	// AssetsDir and run as DirBinaryPath.
	HostBinary string
	Proxy      proxyconfig.Config
	DataDir    string
	// CACertPEM is the identity CA a router trusts.
	CACertPEM        []byte
	MemoryOverheadMB int
	LogMaxBytes      int64
	// MaxRestarts is how many quick proxy restarts in a row are tolerated
	// before the instance fails with "instance proxy failed".
	MaxRestarts int
	// ConfirmTimeout bounds waiting for the proxy to serve a new serial.
	ConfirmTimeout time.Duration
	// UpstreamBeforeHandshake says the proxy connects to the app before it
	// answers a ClientHello and closes the connection when the app does
	// not accept (cellproxy does; Envoy's tcp_proxy connects after the
	// handshake). Then a proxy that answers proves the app listens, and
	// the health monitoring skips the app's own TCP check of that port.
	UpstreamBeforeHandshake bool
	// RoutesToInstanceAddress says the routes name the container's own
	// address (routing.instance_address): readiness then dials the
	// proxy's container port, the router's path, and Verify makes its own
	// handshakes on the host ports (see Ready).
	RoutesToInstanceAddress bool
	// ConfirmDelay is how long after rewriting the SDS file the first
	// confirming handshake waits: cellproxy notices a new file within its
	// 1s poll (Envoy's directory watch is quicker). Checking at once only
	// bought handshakes that saw the old serial: ~4 per rotation, half of
	// the agent's CPU for a rotation.
	ConfirmDelay time.Duration
	Clock        clock.Clock
	// User runs the proxy in the container: an unprivileged uid and gid
	// of its own, with no capabilities (its ports are above 1024). Its
	// files are group User.GID, mode 0640, in a setgid directory.
	User containerstore.User
	// NoFile is the proxy's RLIMIT_NOFILE (0: DefaultNoFile, at most
	// the agent's own hard limit): each client connection takes two
	// descriptors.
	NoFile uint64
	// IssueC2C, when set, issues the container-to-container certificate
	// (credmanager.Issuer.IssueC2C); an instance with app port 8080 then
	// gets Diego's c2c listener on 61443 serving it.
	IssueC2C func(guid string, ous, hostnames []string) (credmanager.Credential, error)
	// InitBinary, when set, is cellinit on the host: it becomes each
	// proxied container's first process and runs the proxy beside the app,
	// one runc run per start instead of two (see initmode.go). Empty: the
	// proxy is a runc exec.
	InitBinary string
	// StatePoll is how often a cellinit-run proxy's state file is checked
	// (0: one second).
	StatePoll time.Duration
	// HealthInterval is the store's health monitoring interval (0: none).
	// A cellinit-run proxy's instance then has its liveness checked by
	// cellinit inside the container at that interval (initHealth), and
	// Alive answers what cellinit last reported.
	HealthInterval time.Duration
	// AdminReload says the proxy has cellproxy's POST /secrets/reload: a
	// rotation is confirmed by one request to it (no delay, no handshake).
	// A proxy that answers 404 is checked by handshakes, as Envoy is.
	AdminReload bool
	// Notices takes what the hook tells the store (the store's Inbox):
	// proxy exits, restarts, a restarted proxy serving again, an
	// instance's proxy failure, unconfirmed rotations and drains. nil:
	// nobody is told.
	Notices containerstore.Notifier
}

// DefaultNoFile is the proxy's file limit when Config leaves it 0.
const DefaultNoFile = 65536

// Hook is the proxy concern. PortsHook and FilesHook are its two places in
// the store's hook order.
type Hook struct {
	cfg      Config
	logger   lager.Logger
	runner   containerstore.ProcessRunner
	verifier *verifier

	mu        sync.Mutex // guards instances and closed
	instances map[string]*instance

	// ctx is supervision's: the supervisors' containerd calls and waits
	// use it; Run's end cancels it. wg counts the supervisor goroutines;
	// closed (under mu) refuses new ones once Run ended.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed bool

	// watch wakes cellinit-run proxies' supervisors (nil: they poll);
	// made by the first of them (stateWatch), under mu.
	watch       *stateWatch
	watchFailed bool
}

// instance is what the hook knows of one container's proxy.
type instance struct {
	inst   *containerstore.Instance
	serial string // the serial the proxy must serve
	pid    uint32
	sup    *supervisor
	// stopping is set once the proxy presents an invalid certificate (see
	// Stopping); rotations no longer rewrite its certificate.
	stopping bool
	// initChecks says cellinit runs the instance's liveness checks (its
	// state file says so); unhealthy is why they last failed, or that the
	// proxy is down, "" when they passed (or none ran yet) and the proxy
	// runs. Set by watchInit.
	initChecks bool
	unhealthy  string
	// sdsGen counts the rewrites of the proxy's SDS files (rotations, the
	// drain; sdsWriting): a Verify or confirm records the serial it saw
	// only when no rewrite began since it started (confirmed).
	sdsGen uint64
	// readySeen is what a Ready that passed saw on the host TLS ports:
	// the next Verify takes it instead of handshaking again (see Ready).
	readySeen readySeen
}

// readySeen says that a Ready's handshakes on every host TLS port, as a
// router would make them, got serial at SDS generation gen, at time at.
type readySeen struct {
	serial string
	gen    uint64
	at     time.Time
}

// readySeenFor is how long a Ready's handshakes stand for the Verify
// that follows it: a start verifies right after its readiness passed.
const readySeenFor = time.Second

// New makes the hook.
func New(logger lager.Logger, cfg Config, runner containerstore.ProcessRunner) (*Hook, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.NewClock()
	}
	if cfg.MaxRestarts <= 0 {
		cfg.MaxRestarts = 5
	}
	if cfg.ConfirmTimeout <= 0 {
		cfg.ConfirmTimeout = 10 * time.Second
	}
	if cfg.ConfirmDelay <= 0 {
		cfg.ConfirmDelay = 1100 * time.Millisecond
	}
	if cfg.NoFile == 0 {
		cfg.NoFile = DefaultNoFile
	}
	if cfg.StatePoll <= 0 {
		cfg.StatePoll = time.Second
	}
	if cfg.User.UID == 0 || cfg.User.GID == 0 {
		return nil, fmt.Errorf("proxy user %d:%d: the proxy does not run as root (uid or gid 0)", cfg.User.UID, cfg.User.GID)
	}
	// runc sets an exec's limits from outside (prlimit); above the hard
	// limit it inherited that needs CAP_SYS_RESOURCE, which a sandboxed
	// host may not have. Ask for no more than the agent itself may hold.
	var own unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &own); err == nil && own.Max < cfg.NoFile {
		logger.Info("proxy-file-limit-lowered", lager.Data{"wanted": cfg.NoFile, "hard-limit": own.Max})
		cfg.NoFile = own.Max
	}
	if err := cfg.Proxy.Validate(); err != nil {
		return nil, fmt.Errorf("proxy config: %w", err)
	}
	if err := checkBinary(cfg.HostBinary); err != nil {
		return nil, err
	}
	if cfg.InitBinary != "" {
		if st, err := os.Stat(cfg.InitBinary); err != nil || !st.Mode().IsRegular() {
			return nil, fmt.Errorf("init binary %q: not a file (build cellinit next to cellagent): %v", cfg.InitBinary, err)
		}
	}
	v, err := newVerifier(cfg.CACertPEM)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "proxy"), 0o700); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Hook{cfg: cfg, logger: logger.Session("proxy"), runner: runner, verifier: v, instances: map[string]*instance{},
		ctx: ctx, cancel: cancel}, nil
}

// stateWatch answers the hook's state watch, started by the first
// supervisor of a cellinit-run proxy (nil where inotify is unavailable:
// supervisors then poll). Call it from a supervisor, which holds h.wg.
func (h *Hook) stateWatch() *stateWatch {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.watch == nil && !h.watchFailed && !h.closed {
		w, err := newStateWatch(&h.wg)
		if err != nil {
			h.watchFailed = true
			h.logger.Info("state-watch-unavailable", lager.Data{"error": err.Error(), "poll": h.cfg.StatePoll.String()})
			return nil
		}
		h.watch = w
	}
	return h.watch
}

// Run (ifrit) owns the proxy supervisors: at its signal it ends every
// one, without touching any proxy (they keep serving; the next agent
// adopts them), and returns once their goroutines have returned. No
// supervisor starts after that. Put it before the store in an ordered
// grouper, so that it ends after it.
func (h *Hook) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	close(ready)
	<-signals
	h.Shutdown()
	return nil
}

// Shutdown ends supervision as Run does at its signal; it is idempotent.
func (h *Hook) Shutdown() {
	h.mu.Lock()
	h.closed = true
	var sups []*supervisor
	for _, in := range h.instances {
		if in.sup != nil {
			sups = append(sups, in.sup)
			in.sup = nil
		}
	}
	h.mu.Unlock()
	for _, sup := range sups {
		close(sup.stop) // first: a wait cut by cancel below is then no exit
	}
	h.cancel()
	h.mu.Lock()
	w := h.watch
	h.mu.Unlock()
	if w != nil {
		w.close()
	}
	h.wg.Wait()
}

// notify tells the store n (Config.Notices).
func (h *Hook) notify(n containerstore.Notice) {
	if h.cfg.Notices != nil {
		h.cfg.Notices.Send(n)
	}
}

func (h *Hook) dir(guid string) string { return filepath.Join(h.cfg.DataDir, "proxy", guid) }

// PortsHook allocates proxy ports: the Pipeline's ProxyPorts step.
func (h *Hook) PortsHook() containerstore.SetupStep[containerstore.ProxyPortsResult] {
	return portsHook{h}
}

// FilesHook writes the files and runs the proxy: the Pipeline's Proxy
// step, which reads the Network and Credentials steps' results.
func (h *Hook) FilesHook() containerstore.SetupStep[containerstore.ProxyResult] { return filesHook{h} }

type portsHook struct{ h *Hook }

var (
	_ containerstore.RequestValidator                          = portsHook{}
	_ containerstore.Restorer[containerstore.ProxyPortsResult] = portsHook{}
)

func (portsHook) Name() string { return "proxy-ports" }

func (portsHook) ValidateRequest(req *executor.RunRequest) error {
	if err := proxyconfig.ValidateAppPorts(req.Ports); err != nil {
		return executor.NewError(executor.ErrInvalidRequest, "ports: %v", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return nil
}

// proxied says whether inst gets a proxy: only an app with ports has
// anything to serve over TLS. Every step of the hook asks it, so an
// instance without ports has no proxy ports, files, mounts, process,
// memory overhead, readiness or verification.
func proxied(inst *containerstore.Instance) bool { return len(inst.Request.Ports) > 0 }

func (p portsHook) Setup(ctx context.Context, logger lager.Logger, in containerstore.Instance) (containerstore.ProxyPortsResult, error) {
	if !proxied(&in) {
		return containerstore.ProxyPortsResult{}, nil
	}
	mappings, admin, err := proxyconfig.AllocatePorts(in.Request.Ports)
	if err != nil {
		return containerstore.ProxyPortsResult{}, err
	}
	res := containerstore.ProxyPortsResult{Ports: map[uint16]uint16{}, AdminPort: admin, MemoryOverheadMB: p.h.cfg.MemoryOverheadMB}
	for _, m := range mappings {
		res.Ports[m.AppPort] = m.ProxyPort
	}
	return res, nil
}

func (portsHook) Teardown(context.Context, lager.Logger, string) error { return nil }

// Restore recomputes the ports: the allocation is deterministic.
func (p portsHook) Restore(ctx context.Context, logger lager.Logger, in containerstore.Instance) (containerstore.ProxyPortsResult, error) {
	return p.Setup(ctx, logger, in)
}

type filesHook struct{ h *Hook }

var (
	_ containerstore.Restorer[containerstore.ProxyResult] = filesHook{}
	_ containerstore.OrphanCleaner                        = filesHook{}
	_ containerstore.Starter                              = filesHook{}
	_ containerstore.StartExplainer                       = filesHook{}
	_ containerstore.Verifier                             = filesHook{}
	_ containerstore.Readiness                            = filesHook{}
)

func (filesHook) Name() string { return "proxy" }

func mappingsOf(inst *containerstore.Instance) []proxyconfig.Mapping {
	var ms []proxyconfig.Mapping
	for _, p := range inst.Request.Ports {
		if pp, ok := inst.ProxyPorts[p]; ok {
			ms = append(ms, proxyconfig.Mapping{AppPort: p, ProxyPort: pp, HTTP2: http2Port(inst.Request.Routes, p)})
		}
	}
	return ms
}

// hasC2C reports whether the instance gets Diego's c2c listener: app port
// 8080 behind the proxy.
func hasC2C(inst *containerstore.Instance) bool {
	_, ok := inst.ProxyPorts[proxyconfig.DefaultHTTPPort]
	return ok
}

// writeC2C issues the instance's c2c certificate and writes its SDS file.
func (h *Hook) writeC2C(inst *containerstore.Instance) error {
	var ous, hosts []string
	if cp := inst.Request.CertificateProperties; cp != nil {
		ous = cp.OrganizationalUnit
	}
	for _, r := range inst.Request.InternalRoutes {
		hosts = append(hosts, r.Hostname)
	}
	cred, err := h.cfg.IssueC2C(inst.GUID, ous, hosts)
	if err != nil {
		return fmt.Errorf("issue c2c certificate: %w", err)
	}
	return proxyconfig.WriteIssuedC2CCertAndKey(h.dir(inst.GUID), cred.CertPEM, cred.KeyPEM, cred.Serial)
}

// checkBinary accepts an executable file, or a directory holding one named
// "envoy" (Diego's layout).
func checkBinary(p string) error {
	st, err := os.Stat(p)
	if err == nil && st.IsDir() {
		exe := filepath.Join(p, "envoy")
		if fi, err := os.Stat(exe); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("proxy directory %q: holds no file \"envoy\" (Diego's layout): %v", p, err)
		}
		return nil
	}
	if err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("proxy binary %q: not a file or a directory holding envoy (build cellproxy next to cellagent or set proxy.binary): %v", p, err)
	}
	return nil
}

// binaryMount mounts the proxy: a directory at AssetsDir, as Diego mounts
// container_proxy_path; a lone executable at BinaryPath.
func binaryMount(hostBinary string) containerstore.Mount {
	return containerstore.Mount{Source: hostBinary, Destination: AssetsDir, ReadOnly: true}
}

// binaryPath is the proxy executable in the container for hostBinary.
func binaryPath(hostBinary string) string {
	if st, err := os.Stat(hostBinary); err == nil && st.IsDir() {
		return DirBinaryPath
	}
	return BinaryPath
}

// http2Port reports whether a route on port asks for HTTP/2.
func http2Port(routes []executor.Route, port uint16) bool {
	for _, r := range routes {
		if r.Port == port && r.Protocol == "http2" {
			return true
		}
	}
	return false
}

// Setup writes the proxy's files and answers their mounts, and cellinit's
// with the first process when the proxy runs under it (ProxyResult).
// The hook keeps its own copy of the instance (with this result's Init)
// for the proxy's supervision and rotations: it reads what the earlier
// steps gave, and host mode's addresses, which the store fills at the
// Network step.
func (f filesHook) Setup(ctx context.Context, logger lager.Logger, in containerstore.Instance) (containerstore.ProxyResult, error) {
	h := f.h
	inst := &in
	if !proxied(inst) {
		return containerstore.ProxyResult{}, nil
	}
	if len(inst.CertPEM) == 0 || inst.Credentials == nil {
		return containerstore.ProxyResult{}, errors.New("no instance credentials to serve (the Credentials step must run first)")
	}
	if inst.User.UID == h.cfg.User.UID || inst.User.GID == h.cfg.User.GID {
		return containerstore.ProxyResult{}, fmt.Errorf("the process user %d:%d shares the proxy's uid or gid (%d:%d): the app could read the proxy's files or signal it; run as another user",
			inst.User.UID, inst.User.GID, h.cfg.User.UID, h.cfg.User.GID)
	}
	dir := h.dir(inst.GUID)
	if err := proxyDir(dir, int(h.cfg.User.GID)); err != nil {
		return containerstore.ProxyResult{}, err
	}
	cfg := h.cfg.Proxy
	cfg.NodeID = inst.GUID
	// Diego's Envoy forwards to the container's internal IP (envoyconfig
	// generateProxyConfig), so an app bound only to CF_INSTANCE_INTERNAL_IP
	// is reachable; in host mode that is 127.0.0.1.
	if inst.InternalIP != "" {
		cfg.AppHost = inst.InternalIP
	}
	mappings := mappingsOf(inst)
	if h.cfg.IssueC2C != nil && hasC2C(inst) {
		// The c2c secret first: the proxy refuses a bootstrap whose SDS
		// files are missing.
		if err := h.writeC2C(inst); err != nil {
			return containerstore.ProxyResult{}, err
		}
		mappings = append(mappings, proxyconfig.C2CMapping())
	}
	if err := proxyconfig.Write(dir, cfg, mappings, inst.ProxyAdminPort, inst.CertPEM, inst.KeyPEM, inst.Credentials.Serial); err != nil {
		return containerstore.ProxyResult{}, fmt.Errorf("write proxy config: %w", err)
	}
	res := containerstore.ProxyResult{Mounts: []containerstore.Mount{
		{Source: dir, Destination: cfg.ConfigDir, ReadOnly: true},
		binaryMount(h.cfg.HostBinary)}}
	if h.cfg.InitBinary != "" && underInit(inst) {
		mounts, init, err := f.setupInit(inst)
		if err != nil {
			return containerstore.ProxyResult{}, err
		}
		res.Mounts = append(res.Mounts, mounts...)
		res.Init = init
	}
	inst.Mounts = append(inst.Mounts, res.Mounts...)
	inst.Init = res.Init
	h.mu.Lock()
	h.instances[inst.GUID] = &instance{inst: inst, serial: inst.Credentials.Serial}
	h.mu.Unlock()
	return res, nil
}

func (f filesHook) Teardown(ctx context.Context, logger lager.Logger, guid string) error {
	f.Stopping(logger, guid)
	f.h.mu.Lock()
	delete(f.h.instances, guid)
	f.h.verifier.forget(guid)
	f.h.mu.Unlock()
	return os.RemoveAll(f.h.dir(guid))
}

// Restore writes nothing of the instance: it keeps its copy, as Setup does.
func (f filesHook) Restore(ctx context.Context, logger lager.Logger, in containerstore.Instance) (containerstore.ProxyResult, error) {
	inst := &in
	_, err := os.Stat(filepath.Join(f.h.dir(inst.GUID), proxyconfig.BootstrapFile))
	if !proxied(inst) {
		if err == nil {
			// An earlier agent gave every instance a proxy: known, its
			// files take the rotations (CredentialsRotated would wait for
			// it forever), but nothing supervises or verifies it.
			f.h.mu.Lock()
			f.h.instances[inst.GUID] = &instance{inst: inst}
			f.h.mu.Unlock()
		}
		return containerstore.ProxyResult{}, nil
	}
	if err != nil {
		return containerstore.ProxyResult{}, fmt.Errorf("proxy files of %s: %w", inst.GUID, err)
	}
	serial := ""
	if inst.Credentials != nil {
		serial = inst.Credentials.Serial
	}
	f.h.mu.Lock()
	f.h.instances[inst.GUID] = &instance{inst: inst, serial: serial}
	f.h.mu.Unlock()
	return containerstore.ProxyResult{}, nil
}

func (f filesHook) CleanupOrphans(ctx context.Context, logger lager.Logger, keep func(string) bool) error {
	entries, err := os.ReadDir(filepath.Join(f.h.cfg.DataDir, "proxy"))
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if !keep(e.Name()) {
			logger.Info("removing-orphan-proxy-dir", lager.Data{guidKey: e.Name()})
			errs = append(errs, os.RemoveAll(filepath.Join(f.h.cfg.DataDir, "proxy", e.Name())))
		}
	}
	return errors.Join(errs...)
}

func (f filesHook) instance(guid string) (*instance, bool) {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	in, ok := f.h.instances[guid]
	return in, ok
}

// Ready is one attempt: every proxy port completes a TLS handshake with
// the instance's identity (any serial: the proxy is up). A port with a
// host TLS port is dialled there, as a router would (and Verify does), so
// that when every such handshake got the serial the proxy must serve,
// the Verify that follows the readiness at a start takes these
// handshakes for its own (readySeen) instead of making them again: a
// TLS handshake on each side per start (about 0.8 ms of CPU, issue 16).
// A port without one is dialled at the container's address, and so is
// every port where the routes name that address (RoutesToInstanceAddress):
// readiness then checks the router's path, and Verify dials the host
// ports itself.
func (f filesHook) Ready(ctx context.Context, logger lager.Logger, inst *containerstore.Instance) error {
	in, known := f.instance(inst.GUID)
	var want string
	var gen uint64
	if known {
		f.h.mu.Lock()
		want, gen = in.serial, in.sdsGen
		f.h.mu.Unlock()
	}
	viaHost := inst.ExternalIP != "" && !f.h.cfg.RoutesToInstanceAddress
	verified := known && viaHost
	for _, m := range inst.Ports {
		if m.ContainerTLSProxyPort == 0 && m.HostTLSProxyPort == 0 {
			continue
		}
		addr := fmt.Sprintf("%s:%d", inst.InternalIP, m.ContainerTLSProxyPort)
		name := addr
		if m.HostTLSProxyPort != 0 && viaHost {
			addr = fmt.Sprintf("%s:%d", inst.ExternalIP, m.HostTLSProxyPort)
			name += " (dialled at its host port " + addr + ")"
		}
		got, err := f.h.verifier.handshake(ctx, addr, inst.GUID)
		if err != nil {
			return fmt.Errorf("proxy not ready on %s: %w", name, err)
		}
		if m.HostTLSProxyPort != 0 && got != want {
			verified = false
		}
	}
	if verified {
		f.h.mu.Lock()
		if in.sdsGen == gen {
			in.readySeen = readySeen{serial: want, gen: gen, at: f.h.cfg.Clock.Now()}
		}
		f.h.mu.Unlock()
	}
	return nil
}

// takeReadySeen answers whether a Ready just saw in's proxy serve the
// serial it must on every host TLS port, with that serial and its SDS
// generation; what it saw is used once.
func (f filesHook) takeReadySeen(in *instance) (string, uint64, bool) {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	seen := in.readySeen
	in.readySeen = readySeen{}
	if seen.serial == "" || seen.serial != in.serial || seen.gen != in.sdsGen ||
		f.h.cfg.Clock.Since(seen.at) > readySeenFor {
		return "", 0, false
	}
	return seen.serial, seen.gen, true
}

// Alive is the health monitoring's check: every proxy port answers a
// ClientHello (see verifier.probe). A full handshake per instance and
// interval cost 8% of a core at 250 instances and a 5s interval, a resumed
// one ~1.5% at a 30s interval, the ClientHello alone most of an idle
// agent's CPU at 500 instances. Where cellinit runs the checks (initHealth)
// it answers what cellinit last reported, without a connection.
func (f filesHook) Alive(ctx context.Context, logger lager.Logger, inst *containerstore.Instance) error {
	if checked, unhealthy := f.initHealthState(inst.GUID); checked {
		if unhealthy != "" {
			return errors.New(unhealthy)
		}
		return nil
	}
	for _, m := range inst.Ports {
		if m.ContainerTLSProxyPort == 0 {
			continue
		}
		addr := fmt.Sprintf("%s:%d", inst.InternalIP, m.ContainerTLSProxyPort)
		if err := f.h.verifier.probe(ctx, addr, inst.GUID); err != nil {
			return fmt.Errorf("proxy not ready on %s: %w", addr, err)
		}
	}
	return nil
}

var _ containerstore.LivenessReporter = filesHook{}

// ReportedLiveness answers what Alive answers of an instance whose
// liveness cellinit checks (its last report, or that cellinit reports the
// proxy down), without a connection; nil for the others, which Alive
// probes.
func (f filesHook) ReportedLiveness(inst *containerstore.Instance) error {
	if _, unhealthy := f.initHealthState(inst.GUID); unhealthy != "" {
		return errors.New(unhealthy)
	}
	return nil
}

// initHealthState answers whether cellinit checks guid's liveness and
// why its last round failed.
func (f filesHook) initHealthState(guid string) (bool, string) {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	if in, ok := f.h.instances[guid]; ok && in.initChecks {
		return true, in.unhealthy
	}
	return false, ""
}

var _ containerstore.CheckCovering = filesHook{}

// CoversCheck says whether Alive's answer covers the app's check: cellinit
// runs it (initHealth), or it is a TCP check of a port CoversTCP covers.
func (f filesHook) CoversCheck(inst *containerstore.Instance, check *executor.Check) bool {
	if checked, _ := f.initHealthState(inst.GUID); checked {
		return true
	}
	return check.TCP != nil && f.CoversTCP(inst, check.TCP.Port)
}

// CoversTCP says whether Alive's answer from the proxy proves the app
// accepts connections on port: when the proxy dials the app before it
// answers a ClientHello (cellproxy) and port has a proxy port.
func (f filesHook) CoversTCP(inst *containerstore.Instance, port uint16) bool {
	if !f.h.cfg.UpstreamBeforeHandshake {
		return false
	}
	for _, m := range inst.Ports {
		if m.ContainerPort == port && m.ContainerTLSProxyPort != 0 {
			return true
		}
	}
	return false
}

// Verify dials every host TLS port as the router would and checks the
// serial is the one just issued; it retries briefly (SDS takes a second).
// Right after a Ready whose handshakes on those ports saw that serial at
// the same SDS generation (readySeen) it takes theirs and dials nothing.
func (f filesHook) Verify(ctx context.Context, logger lager.Logger, inst *containerstore.Instance) error {
	if !proxied(inst) {
		return nil
	}
	in, ok := f.instance(inst.GUID)
	if !ok {
		return fmt.Errorf("no proxy for %s", inst.GUID)
	}
	if serial, gen, ok := f.takeReadySeen(in); ok {
		f.h.confirmed(logger, in, inst.GUID, serial, gen)
		return nil
	}
	deadline := f.h.cfg.Clock.Now().Add(f.h.cfg.ConfirmTimeout)
	for {
		serial, gen, err := f.verifyOnce(ctx, in)
		if err == nil {
			// The serial this verify checked, not in.serial now: a
			// rotation may have replaced it meanwhile.
			f.h.confirmed(logger, in, inst.GUID, serial, gen)
			return nil
		}
		if f.h.cfg.Clock.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-f.h.cfg.Clock.After(200 * time.Millisecond):
		}
	}
}

// verifyOnce checks once that in's proxy serves the serial it must, and
// answers that serial and the SDS generation it read it with.
func (f filesHook) verifyOnce(ctx context.Context, in *instance) (string, uint64, error) {
	f.h.mu.Lock()
	want, gen, inst := in.serial, in.sdsGen, in.inst
	f.h.mu.Unlock()
	for _, m := range inst.Ports {
		if m.HostTLSProxyPort == 0 {
			continue
		}
		addr := fmt.Sprintf("%s:%d", inst.ExternalIP, m.HostTLSProxyPort)
		got, err := f.h.verifier.handshake(ctx, addr, inst.GUID)
		if err != nil {
			return "", 0, fmt.Errorf("verified handshake on %s failed: %w", addr, err)
		}
		if got != want {
			return "", 0, fmt.Errorf("served serial %s on %s differs from issued %s", got, addr, want)
		}
	}
	return want, gen, nil
}

// proxyDir makes dir (owned by the agent: root) group gid, mode 2750: the proxy's group reads it, and
// every file created in it gets that group (setgid), so proxyconfig's
// 0640 files are readable by the proxy and by nobody else but root.
func proxyDir(dir string, gid int) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := os.Chown(dir, -1, gid); err != nil {
		return err
	}
	return os.Chmod(dir, 0o750|os.ModeSetgid)
}
