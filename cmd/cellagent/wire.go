package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"
	"github.com/tedsuo/ifrit/sigmon"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/containerstore/network"
	"github.com/cellagent/cellagent/containerstore/runtime"
	"github.com/cellagent/cellagent/credmanager"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/executor/httpapi"
	"github.com/cellagent/cellagent/internal/adapters"
	"github.com/cellagent/cellagent/metrics"
	"github.com/cellagent/cellagent/proxyconfig"
	"github.com/cellagent/cellagent/proxyhook"
	"github.com/cellagent/cellagent/routeemitter"
	"github.com/cellagent/cellagent/routeemitter/embeddednats"
	"github.com/cellagent/cellagent/routeemitter/natsauth"
)

func loadConfig(path string) (config.Config, error) {
	return config.LoadAndValidate(path, checkProxyBinary)
}

func newLogger(level string) lager.Logger {
	logger := lager.NewLogger("cellagent")
	lvl := map[string]lager.LogLevel{"debug": lager.DEBUG, "info": lager.INFO, "error": lager.ERROR, "fatal": lager.FATAL}[level]
	logger.RegisterSink(lager.NewPrettySink(os.Stdout, lvl))
	return logger
}

func run(cfg config.Config) error {
	logger := newLogger(cfg.LogLevel)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("make data_dir: %w", err)
	}
	if err := mountSecretDirs(logger, cfg); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	clk := clock.NewClock()
	total := detectCapacity(logger, cfg)
	rt, err := runtime.New(runtime.Config{Socket: cfg.Containerd.Socket, Namespace: cfg.Containerd.Namespace,
		CellID: cfg.CellID, Preloaded: cfg.PreloadedRootfs, LoggerBinary: loggerBinary(logger, self),
		InsecureRegistries: cfg.Containerd.InsecureRegistries, PullTimeout: time.Duration(cfg.Containerd.PullTimeout),
		Clock: clk})
	if err != nil {
		return err
	}
	defer rt.Close()

	externalIP := cfg.Network.ExternalIP
	if externalIP == "" {
		externalIP = network.DefaultExternalIP().String()
	}
	if cfg.Network.Mode == "bridge" {
		reserveHostPorts(logger, cfg.Network.HostPortRange)
	}
	netMgr, err := network.New(logger, network.Config{
		Mode: cfg.Network.Mode, Subnet: cfg.Network.Subnet, HostPortRange: cfg.Network.HostPortRange,
		ExternalIP: externalIP, PortQuarantine: time.Duration(cfg.Network.PortQuarantine),
		DataDir: cfg.DataDir, Plumbing: cfg.Network.Plumbing, PluginDirs: cfg.Network.PluginDirs, BridgeName: cfg.Network.Bridge,
		NetworkName: cfg.Network.Name, Clock: clk, DefaultEgress: cfg.Network.Egress.Default,
		PoolSize: cfg.Network.PoolSize, ReturnDelay: returnDelay(cfg),
	})
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	// Made before the parts that report to them and before the store:
	// the store's mailbox (the proxy and the credential notifier tell the
	// store what happened by notices to it), and the figures the route
	// hook and the credentials report directly.
	inbox := containerstore.NewInbox()
	observer := metrics.NewObserver()
	// The identity CA comes first: the proxy serves what it signs (its CA,
	// the c2c certificates) and is one of the parts the credential manager
	// tells of rotations, whose answer it waits for (an unconfirmed
	// rotation is retried).
	issuer, err := credmanager.NewIssuer(logger, credmanager.Config{
		DataDir: cfg.DataDir, CACertFile: cfg.Identity.CACert, CAKeyFile: cfg.Identity.CAKey,
		KeyType: credmanager.KeyType(cfg.Identity.KeyType), Validity: time.Duration(cfg.Identity.Validity), Clock: clk,
	})
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	var proxy *proxyhook.Hook
	if cfg.Proxy.Enabled {
		if cfg.Network.Mode == "host" {
			logger.Info("proxy-disabled-in-host-network-mode", lager.Data{"reason": "every proxy would bind the same ports on the host"})
		} else if proxy, err = newProxyHook(logger, cfg, issuer, rt, clk, inbox); err != nil {
			return err
		}
	}
	notifier := adapters.CredentialNotifier{Notices: inbox}
	rotated := []credmanager.Handler{notifier}
	if proxy != nil {
		rotated = append(rotated, proxy)
	}
	creds, err := credmanager.New(logger, credmanager.Config{
		DataDir: cfg.DataDir, Clock: clk, Issuer: issuer,
		Handlers: rotated, FailureHandlers: []credmanager.FailureHandler{notifier},
		ExpiryHandlers: []credmanager.ExpiryHandler{notifier}, ObserveRotation: observer.ObserveRotation,
	})
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	credHook := &adapters.Credentials{Manager: creds, Observe: observer.ObserveIssuance,
		TrustedSystemCertificatesDir: cfg.TrustedSystemCertificatesDir}
	downloadsHook, err := newDownloadsHook(logger, cfg, rt, clk)
	if err != nil {
		return err
	}
	// The route emitter before the store, which registers routes through
	// it and reads its NATS state; the store tells the emitter its figures
	// through the presence feed, made first.
	presence := routeemitter.NewPresenceFeed()
	var natsAuth natsauth.EmbeddedAuth
	if len(cfg.NATS.URLs) == 0 {
		natsAuth, err = natsauth.EnsureEmbeddedAuth(cfg.DataDir, natsauth.EmbeddedAuth(cfg.NATS.EmbeddedAuth))
		if err != nil {
			return fmt.Errorf("embedded nats credential: %w", err)
		}
	}
	emitter, err := routeemitter.New(logger, routeemitter.Config{
		URLs: cfg.NATS.URLs, EmbeddedListen: cfg.NATS.EmbeddedListen, EmbeddedAuth: natsAuth, DataDir: cfg.DataDir,
		CredentialsFile: cfg.NATS.CredentialsFile, NKeySeedFile: cfg.NATS.NKeySeedFile,
		TLS:    routeemitter.TLSFiles{CACert: cfg.NATS.TLS.CACert, Cert: cfg.NATS.TLS.Cert, Key: cfg.NATS.TLS.Key},
		CellID: cfg.CellID, Zone: cfg.Zone, APIAddress: cfg.Listen.Admin, Clock: clk,
		InstanceAddress: cfg.Routing.InstanceAddress, DefaultRegisterInterval: time.Duration(cfg.Routing.RegisterInterval),
	}, presence.Latest)
	if err != nil {
		return fmt.Errorf("route emitter: %w", err)
	}
	routeHook := &adapters.Routes{Emitter: emitter, OnRegister: observer.Registered, OnUnregister: observer.Unregistered}
	overhead := 0
	var usage func(string) *executor.MemoryUsage
	var proxyPorts containerstore.SetupStep[containerstore.ProxyPortsResult]
	var proxyFiles containerstore.SetupStep[containerstore.ProxyResult]
	if proxy != nil {
		proxyPorts, proxyFiles = proxy.PortsHook(), proxy.FilesHook()
		overhead = cfg.Proxy.MemoryOverheadMB
		usage = func(guid string) *executor.MemoryUsage {
			total, err := rt.Cgroups().MemoryBytes(guid)
			if err != nil {
				return nil
			}
			return proxy.Usage(guid, total, rt.Cgroups().Procs)
		}
	}

	pipeline := containerstore.Pipeline{
		Downloads:   downloadsHook,
		ProxyPorts:  proxyPorts,
		Network:     &adapters.Network{Manager: netMgr},
		Credentials: credHook,
		Proxy:       proxyFiles,
		BindMounts:  &containerstore.BindMountHook{Allowlist: cfg.BindMountAllowlist},
		Routes:      routeHook,
	}
	store, err := containerstore.New(logger, containerstore.Config{
		CellID: cfg.CellID, Zone: cfg.Zone, DataDir: cfg.DataDir, Capacity: total,
		ReservedExpiration:    time.Duration(cfg.ReservedExpiration),
		DefaultStartTimeout:   time.Duration(cfg.StartTimeout),
		DefaultStopGrace:      time.Duration(cfg.StopGrace),
		ProxyMemoryOverheadMB: overhead,
		LogMaxBytes:           cfg.LogMaxBytes, DefaultUser: cfg.DefaultUser, ExternalIP: externalIP,
		HealthInterval: time.Duration(cfg.HealthInterval), DrainWindow: time.Duration(cfg.DrainWindow),
		DefaultMaxPids: cfg.DefaultMaxPids, AllowPrivileged: cfg.AllowPrivileged, DiskReserveMB: cfg.DiskReserveMB,
		EvacuationTimeout: time.Duration(cfg.EvacuationTimeout),
	}, containerstore.Deps{Runtime: rt, Tasks: rt, Pipeline: pipeline, Clock: clk, Usage: usage, Inbox: inbox,
		DiskUsage: rt.WritableBytes, NATSState: emitter.ConnectionState, Presence: adapters.Presence(presence)})
	if err != nil {
		return err
	}

	met := metrics.New(metrics.Config{Source: store, Usage: usage, Clock: clk,
		CPUTime: rt.Cgroups().CPUTime, Observer: observer})
	if cfg.Network.Mode == "bridge" {
		if err := met.Register(network.DeniedCollector{Manager: netMgr}); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	diego, diegoView, err := diegoMembers(logger, cfg, store, total, clk, met)
	if err != nil {
		return fmt.Errorf("diego: %w", err)
	}
	api := httpapi.New(logger, httpapi.Config{Client: store, Evacuator: store, Explainer: store, Images: rt,
		Network: network.FilterAPI{Manager: netMgr, Logger: logger},
		Extra:   map[string]http.Handler{"GET /metrics": met.Handler()}, Diego: diegoView})
	var members grouper.Members
	if len(cfg.NATS.URLs) == 0 {
		embedded, err := embeddednats.NewEmbeddedNATS(logger, cfg.NATS.EmbeddedListen, filepath.Join(cfg.DataDir, "nats"))
		if err != nil {
			return fmt.Errorf("embedded nats: %w", err)
		}
		embedded.RequireAuth(natsAuth)
		members = append(members, grouper.Member{Name: "nats", Runner: embedded})
	}
	members = append(members, grouper.Members{
		{Name: "route-emitter", Runner: emitter},
		{Name: "credmanager", Runner: creds},
	}...)
	if proxy != nil {
		// Before the store: an ordered group ends it after the store, so a
		// start, stop or rotation in flight at shutdown still has its
		// proxy's supervision (drain, confirmation, exec start) and is cut
		// by the store's own shutdown instead. A supervisor that outlives
		// the store only sends notices, which never block.
		members = append(members, grouper.Member{Name: "proxy-supervisors", Runner: proxy})
	}
	members = append(members, grouper.Members{
		{Name: "containerstore", Runner: store.Runner()},
		{Name: "metrics", Runner: met},
		{Name: "evacuate-on-sigusr1", Runner: evacuateOnSignal(logger, store)},
	}...)
	if pool := netMgr.PoolRunner(logger); pool != nil {
		members = append(members, grouper.Member{Name: "network-pool", Runner: pool})
	}
	apiMembers, err := listeners(cfg, api)
	if err != nil {
		return err
	}
	members = append(members, apiMembers...)
	members = append(members, diego...)
	group := grouper.NewOrdered(os.Interrupt, members)
	logger.Info("starting", lager.Data{"cell-id": cfg.CellID, "admin": cfg.Listen.Admin, "data-dir": cfg.DataDir,
		"containerd": cfg.Containerd.Socket, "capacity": total})
	monitor := ifrit.Invoke(sigmon.New(group, syscall.SIGTERM, os.Interrupt))
	err = <-monitor.Wait()
	if err != nil {
		logger.Error("exited-with-failure", err)
		return err
	}
	logger.Info("exited")
	return nil
}

// detectCapacity fills the zero capacity values from the machine.
func detectCapacity(logger lager.Logger, cfg config.Config) executor.ResourceTotals {
	t := executor.ResourceTotals{MemoryMB: cfg.Capacity.MemoryMB, DiskMB: cfg.Capacity.DiskMB, Containers: cfg.Capacity.MaxContainers}
	if t.MemoryMB == 0 {
		t.MemoryMB = memTotalMB()
	}
	if t.DiskMB == 0 {
		var st syscall.Statfs_t
		if err := syscall.Statfs(cfg.DataDir, &st); err == nil {
			t.DiskMB = int(st.Blocks * uint64(st.Bsize) >> 20)
		}
	}
	logger.Info("capacity", lager.Data{"memory-mb": t.MemoryMB, "disk-mb": t.DiskMB, "containers": t.Containers})
	return t
}

func memTotalMB() int {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 1024
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return kb / 1024
		}
	}
	return 1024
}

func newProxyHook(logger lager.Logger, cfg config.Config, issuer *credmanager.Issuer, rt *runtime.Client, clk clock.Clock, notices containerstore.Notifier) (*proxyhook.Hook, error) {
	binary, bundled, err := proxyBinary(cfg)
	if err != nil {
		return nil, err
	}
	pc := proxyconfig.DefaultConfig()
	pc.RequireClientCerts = cfg.Proxy.RequireClientCerts
	pc.VerifySAN = cfg.Proxy.VerifySAN
	if cfg.Proxy.Kind == "envoy" {
		pc.LogLevel = proxyconfig.EnvoyLogLevel // Diego's --log-level critical
	}
	if cfg.Proxy.TrustedCA != "" {
		b, err := os.ReadFile(cfg.Proxy.TrustedCA)
		if err != nil {
			return nil, fmt.Errorf("proxy.trusted_ca: %w", err)
		}
		pc.TrustedCAPEM = b
	}
	initBinary := ""
	if cfg.Proxy.InitEnabled() {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find own executable: %w", err)
		}
		initBinary = filepath.Join(filepath.Dir(self), "cellinit")
		if _, err := os.Stat(initBinary); err != nil && cfg.Proxy.Init == nil {
			// On by default only: a cell upgraded without installing cellinit
			// keeps the proxy's runc exec (and a warning) instead of failing
			// to start with its containers unsupervised. proxy.init: true
			// without cellinit still fails in proxyhook.New.
			logger.Info("proxy-init-unavailable", lager.Data{"init-binary": initBinary, "error": err.Error(),
				"fallback": "the proxy is started with runc exec; install cellinit next to cellagent"})
			initBinary = ""
		}
	}
	h, err := proxyhook.New(logger, proxyhook.Config{HostBinary: binary, Proxy: pc, DataDir: cfg.DataDir,
		CACertPEM: issuer.CACertPEM(), IssueC2C: issuer.IssueC2C, MemoryOverheadMB: cfg.Proxy.MemoryOverheadMB, LogMaxBytes: cfg.LogMaxBytes, Clock: clk,
		UpstreamBeforeHandshake: bundled, InitBinary: initBinary, RoutesToInstanceAddress: cfg.Routing.InstanceAddress,
		AdminReload: bundled, Notices: notices, HealthInterval: time.Duration(cfg.HealthInterval),
		User: containerstore.User{UID: cfg.Proxy.UID, GID: cfg.Proxy.GID}}, rt)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return h, nil
}

// reserveHostPorts keeps the kernel from handing out the host port range as
// ephemeral source ports: the host port forwards (nftables) match any local
// destination in the range, so a local client bound to such a port could
// be answered by a container.
func reserveHostPorts(logger lager.Logger, portRange string) {
	const path = "/proc/sys/net/ipv4/ip_local_reserved_ports"
	b, err := os.ReadFile(path)
	if err != nil {
		logger.Error("read-reserved-ports", err)
		return
	}
	cur := strings.TrimSpace(string(b))
	for _, r := range strings.Split(cur, ",") {
		if r == portRange {
			return
		}
	}
	next := portRange
	if cur != "" {
		next = cur + "," + portRange
	}
	if err := os.WriteFile(path, []byte(next), 0o644); err != nil {
		logger.Error("reserve-host-ports", err, lager.Data{"range": portRange})
	}
}

// evacuateOnSignal starts an evacuation when the agent gets SIGUSR1.
func evacuateOnSignal(logger lager.Logger, store *containerstore.Store) ifrit.Runner {
	return ifrit.RunFunc(func(signals <-chan os.Signal, ready chan<- struct{}) error {
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		defer signal.Stop(usr1)
		close(ready)
		for {
			select {
			case <-usr1:
				logger.Info("sigusr1-evacuating")
				_ = store.Evacuate()
			case <-signals:
				return nil
			}
		}
	})
}

// returnDelay is network.Config.ReturnDelay: with routes to container
// addresses a namespace returned to the pool (and so its address) waits
// out the port quarantine before the next container gets it.
func returnDelay(cfg config.Config) time.Duration {
	if cfg.Routing.InstanceAddress {
		return time.Duration(cfg.Network.PortQuarantine)
	}
	return 0
}
