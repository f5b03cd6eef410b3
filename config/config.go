// Package config is cellagent's configuration file: defaults, strict
// decoding (unknown keys rejected) and validation that reports every
// problem at once.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/executor/netrules"
)

type Duration = executor.Duration

// registryPattern is a registry as the domain of an image reference:
// host name or IPv4 address (or [IPv6]) with an optional port.
var registryPattern = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$`)

type Containerd struct {
	Socket    string `json:"socket"`
	Namespace string `json:"namespace"`
	// InsecureRegistries are the registries (host or host:port, as in an
	// image reference) that docker images are pulled from over plain HTTP,
	// as garden's insecure_docker_registry_list; any other is HTTPS.
	InsecureRegistries []string `json:"insecure_registries"`
	// PullTimeout bounds one image pull (resolve, fetch, check, unpack).
	PullTimeout Duration `json:"pull_timeout"`
}

type TLS struct {
	Cert     string `json:"cert"`
	Key      string `json:"key"`
	ClientCA string `json:"client_ca"`
}

type Listen struct {
	Admin  string `json:"admin"`
	Secure string `json:"secure"`
	TLS    TLS    `json:"tls"`
	// Pprof mounts /debug/pprof on the admin listener (default off).
	Pprof bool `json:"pprof"`
}

type Capacity struct {
	MemoryMB      int `json:"memory_mb"`
	DiskMB        int `json:"disk_mb"`
	MaxContainers int `json:"max_containers"`
}

type Identity struct {
	CACert   string   `json:"ca_cert"`
	CAKey    string   `json:"ca_key"`
	KeyType  string   `json:"key_type"`
	Validity Duration `json:"validity"`
	// Tmpfs keeps <data_dir>/credentials and <data_dir>/proxy (every
	// instance's key) on a tmpfs of their own (internal/secretfs).
	Tmpfs bool `json:"tmpfs"`
}

type Proxy struct {
	Enabled            bool     `json:"enabled"`
	Kind               string   `json:"kind"`
	Binary             string   `json:"binary"`
	MemoryOverheadMB   int      `json:"memory_overhead_mb"`
	RequireClientCerts bool     `json:"require_client_certs"`
	TrustedCA          string   `json:"trusted_ca"`
	VerifySAN          []string `json:"verify_san"`
	// UID and GID run the proxy in each container: unprivileged, with no
	// capabilities, apart from any app user.
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	// Init runs each proxied container under cellinit (built next to
	// cellagent), which starts the app and the proxy: one runc run per
	// start instead of the app's and the proxy's exec (issue 16).
	// cellproxy only; Envoy keeps its exec. Unset: InitEnabled's default.
	Init *bool `json:"init,omitempty"`
}

// InitEnabled answers whether proxied containers run under cellinit:
// proxy.init when set, else on for cellproxy (Envoy keeps its exec).
func (p Proxy) InitEnabled() bool {
	if p.Init != nil {
		return *p.Init
	}
	return p.Kind == "cellproxy"
}

type Network struct {
	Mode           string   `json:"mode"`
	Subnet         string   `json:"subnet"`
	HostPortRange  string   `json:"host_port_range"`
	ExternalIP     string   `json:"external_ip"`
	PortQuarantine Duration `json:"port_quarantine"`
	// Bridge and Name must differ between agents sharing a machine.
	Bridge string `json:"bridge"`
	Name   string `json:"name"`
	// Plumbing makes each namespace's veth and address: "netlink"
	// (default, in-process) or "cni" (the bridge and host-local plugins
	// found in PluginDirs).
	Plumbing   string   `json:"plumbing"`
	PluginDirs []string `json:"cni_plugin_dirs"`
	// HostSingleTenant accepts mode host with the admin API on plain
	// loopback HTTP: every app on the cell can then drive the agent
	// (README, Host network mode).
	HostSingleTenant bool `json:"host_single_tenant"`
	// PoolSize network namespaces (veth, address) are kept prepared for
	// starts to claim; 0 turns the pool off (README, Network pool).
	PoolSize int `json:"pool_size"`
	// Egress.Default are the egress rules of every container (before its
	// own); left out: the public internet only (network.DefaultEgress).
	Egress NetworkEgress `json:"egress"`
}

// NetworkEgress is the network.egress block.
type NetworkEgress struct {
	Default []executor.EgressRule `json:"default"`
}

// Routing says what routes point at.
type Routing struct {
	// InstanceAddress registers the container IP and container ports
	// instead of the cell's external IP and host ports.
	InstanceAddress bool `json:"instance_address"`
	// RegisterInterval is used until a router announces its own.
	RegisterInterval Duration `json:"register_interval"`
}

type NATS struct {
	URLs           []string `json:"urls"`
	EmbeddedListen string   `json:"embedded_listen"`
	// TLS to an external NATS: the CA that signed the servers'
	// certificates and, for servers that verify clients, a client
	// certificate and key (PEM files). User and password go in the URLs.
	TLS NATSTLS `json:"tls"`
	// CredentialsFile (JWT + seed, .creds) or NKeySeedFile authenticate
	// to an external NATS (besides a user and password in the URLs).
	CredentialsFile string `json:"credentials_file"`
	NKeySeedFile    string `json:"nkey_seed_file"`
	// EmbeddedAuth is the embedded server's user and password. Empty: made
	// once at random and kept in data_dir/nats-embedded-auth.json (0600).
	EmbeddedAuth NATSAuth `json:"embedded_auth"`
}

// NATSAuth is a NATS user and password.
type NATSAuth struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// NATSTLS are PEM files for TLS to an external NATS.
type NATSTLS struct {
	CACert string `json:"ca_cert"`
	Cert   string `json:"cert"`
	Key    string `json:"key"`
}

// Config is the whole file. Every key has a default (DefaultConfig).
type Config struct {
	CellID             string            `json:"cell_id"`
	Zone               string            `json:"zone"`
	DataDir            string            `json:"data_dir"`
	Containerd         Containerd        `json:"containerd"`
	Listen             Listen            `json:"listen"`
	Capacity           Capacity          `json:"capacity"`
	PreloadedRootfs    map[string]string `json:"preloaded_rootfs"`
	Identity           Identity          `json:"identity"`
	Proxy              Proxy             `json:"proxy"`
	Network            Network           `json:"network"`
	NATS               NATS              `json:"nats"`
	BindMountAllowlist []string          `json:"bind_mount_allowlist"`
	// TrustedSystemCertificatesDir, when set, is a host directory of the
	// platform's trusted CA certificates, mounted read-only in every
	// container at /etc/cf-system-certificates (CF_SYSTEM_CERT_PATH), as
	// Diego's rep trusted_certificates_path.
	TrustedSystemCertificatesDir string `json:"trusted_system_certificates_dir"`

	ReservedExpiration Duration `json:"reserved_expiration"`
	StartTimeout       Duration `json:"start_timeout"`
	StopGrace          Duration `json:"stop_grace"`
	EvacuationTimeout  Duration `json:"evacuation_timeout"`
	HealthInterval     Duration `json:"health_check_interval"`
	DrainWindow        Duration `json:"drain_window"`
	Routing            Routing  `json:"routing"`
	DefaultUser        string   `json:"default_user"`
	// DefaultMaxPids limits the processes and threads of every instance
	// whose request sets no resources.max_pids.
	DefaultMaxPids int `json:"default_max_pids"`
	// AllowPrivileged lets a run request with privileged: true run as
	// uid 0 or gid 0: root on the host (README, Privileged instances).
	AllowPrivileged bool `json:"allow_privileged"`
	// DiskReserveMB is kept free under data_dir for the agent's own
	// records, rotations and logs: below it no container is reserved.
	DiskReserveMB int    `json:"disk_reserve_mb"`
	LogMaxBytes   int64  `json:"log_max_bytes"`
	LogLevel      string `json:"log_level"`
	// Downloads bounds the download cache of setup downloads and cached
	// dependencies (data_dir/downloads).
	Downloads Downloads `json:"downloads"`
	// Diego, when set, makes the agent a Diego cell (see diego.go).
	Diego *Diego `json:"diego,omitempty"`
}

// Downloads are the download cache's bounds (Diego's executor:
// max_cache_size_in_bytes, max_concurrent_downloads).
type Downloads struct {
	// CacheMB bounds what the cache keeps; entries no container uses are
	// evicted, least recently used first, to stay under it.
	CacheMB int `json:"cache_mb"`
	// MaxArtifactMB bounds one download and what one archive extracts to.
	MaxArtifactMB int `json:"max_artifact_mb"`
	// MaxConcurrent bounds the downloads running at once.
	MaxConcurrent int `json:"max_concurrent"`
}

// DefaultConfig is what an empty file means.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "cell-1"
	}
	return Config{
		CellID:  sanitizeID(host),
		Zone:    "z1",
		DataDir: "/var/lib/cellagent",
		Containerd: Containerd{Socket: "/run/containerd/containerd.sock", Namespace: "cellagent", InsecureRegistries: []string{},
			PullTimeout: Duration(10 * time.Minute)},
		Listen:   Listen{Admin: "127.0.0.1:1800"},
		Capacity: Capacity{MaxContainers: 250},
		PreloadedRootfs: map[string]string{
			"busybox": "/var/lib/cellagent/rootfs/busybox",
		},
		Identity: Identity{KeyType: "ecdsa-p256", Validity: Duration(24 * time.Hour), Tmpfs: true},
		Proxy: Proxy{Enabled: true, Kind: "cellproxy", MemoryOverheadMB: ProxyMemoryOverheadMB["cellproxy"], VerifySAN: []string{},
			UID: 61000, GID: 61000},
		Network: Network{Mode: "bridge", Subnet: "10.255.0.0/22", HostPortRange: "40000-59999",
			PortQuarantine: Duration(3 * time.Minute), Bridge: "cellagent0", Name: "cellagent", PoolSize: 24,
			Plumbing: "netlink", PluginDirs: []string{"/usr/lib/cni", "/opt/cni/bin"}},
		NATS:               NATS{URLs: []string{}, EmbeddedListen: "127.0.0.1:4222"},
		BindMountAllowlist: []string{},
		ReservedExpiration: Duration(time.Minute),
		StartTimeout:       Duration(time.Minute),
		StopGrace:          Duration(10 * time.Second),
		EvacuationTimeout:  Duration(10 * time.Minute),
		HealthInterval:     Duration(30 * time.Second),
		Routing:            Routing{RegisterInterval: Duration(20 * time.Second)},
		DefaultUser:        "vcap",
		DefaultMaxPids:     1024,
		DiskReserveMB:      256,
		Downloads:          Downloads{CacheMB: 10240, MaxArtifactMB: 4096, MaxConcurrent: 5},
		LogMaxBytes:        4 << 20,
		LogLevel:           "info",
	}
}

func sanitizeID(s string) string {
	s = regexp.MustCompile(`[^A-Za-z0-9_-]`).ReplaceAllString(s, "-")
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

// Load reads path over the defaults. An empty path means the defaults.
func Load(path string) (Config, error) {
	cfg, _, err := load(path)
	return cfg, err
}

// load is Load; whole says the error left nothing decoded (the file could
// not be read or parsed).
func load(path string) (cfg Config, whole bool, err error) {
	cfg = DefaultConfig()
	if path == "" {
		return cfg, false, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, true, fmt.Errorf("read config: %w", err)
	}
	if err := Decode(b, &cfg); err != nil {
		return cfg, errors.Is(err, ErrSyntax), inFile(path, err)
	}
	if !proxyOverheadGiven(b) {
		if mb, ok := ProxyMemoryOverheadMB[cfg.Proxy.Kind]; ok {
			cfg.Proxy.MemoryOverheadMB = mb
		}
	}
	return cfg, false, nil
}

// ProxyMemoryOverheadMB is proxy.memory_overhead_mb's default per
// proxy.kind: the memory added to each container's limit for its proxy.
// cellproxy's is what it was measured to need under load plus headroom
// (README, "Memory"); Envoy's is Diego's 32 MB.
var ProxyMemoryOverheadMB = map[string]int{"cellproxy": 16, "envoy": 32}

// proxyOverheadGiven says whether the config file sets
// proxy.memory_overhead_mb (else the kind's default applies).
func proxyOverheadGiven(b []byte) bool {
	var f struct {
		Proxy struct {
			MemoryOverheadMB *json.RawMessage `json:"memory_overhead_mb"`
		} `json:"proxy"`
	}
	_ = json.Unmarshal(b, &f) // decoded already; a problem was reported there
	return f.Proxy.MemoryOverheadMB != nil
}

// inFile names path in each of err's problems.
func inFile(path string, err error) error {
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return fmt.Errorf("config %s: %w", path, err)
	}
	var errs []error
	for _, e := range joined.Unwrap() {
		errs = append(errs, fmt.Errorf("config %s: %w", path, e))
	}
	return errors.Join(errs...)
}

// LoadAndValidate is Load then Validate, reporting the problems of both
// at once: the keys that decoded are validated even when others did not
// (those keep their defaults). A file that cannot be read or parsed is
// reported alone. checks are the caller's own (a binary the config names
// exists): they run beside Validate, never on the defaults of a file that
// could not be read.
func LoadAndValidate(path string, checks ...func(Config) error) (Config, error) {
	cfg, whole, err := load(path)
	if whole {
		return cfg, err
	}
	errs := []error{err, cfg.Validate()}
	for _, check := range checks {
		errs = append(errs, check(cfg))
	}
	return cfg, errors.Join(errs...)
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !idPattern.MatchString(c.CellID) {
		bad("cell_id %q: must match [A-Za-z0-9][A-Za-z0-9_-]{0,62}", c.CellID)
	}
	if c.Zone == "" {
		bad("zone must not be empty")
	}
	if !filepath.IsAbs(c.DataDir) {
		bad("data_dir %q must be an absolute path", c.DataDir)
	}
	if c.Containerd.Socket == "" {
		bad("containerd.socket must not be empty")
	}
	if !idPattern.MatchString(c.Containerd.Namespace) {
		bad("containerd.namespace %q is not a valid namespace", c.Containerd.Namespace)
	}
	for _, r := range c.Containerd.InsecureRegistries {
		if !registryPattern.MatchString(r) {
			bad("containerd.insecure_registries: %q is not a registry host or host:port (no scheme, no path)", r)
		}
	}
	if d := time.Duration(c.Containerd.PullTimeout); d < time.Second || d > 24*time.Hour {
		bad("containerd.pull_timeout %s: must be within 1s-24h", d)
	}
	if _, _, err := net.SplitHostPort(c.Listen.Admin); err != nil {
		bad("listen.admin %q: %v", c.Listen.Admin, err)
	} else if !IsLoopback(c.Listen.Admin) && (c.Listen.TLS.Cert == "" || c.Listen.TLS.Key == "" || c.Listen.TLS.ClientCA == "") {
		bad("listen.admin %q is not a loopback address; set listen.tls.cert, listen.tls.key and listen.tls.client_ca (mutual TLS) or bind 127.0.0.1", c.Listen.Admin)
	}
	if c.Listen.Secure != "" {
		if _, _, err := net.SplitHostPort(c.Listen.Secure); err != nil {
			bad("listen.secure %q: %v", c.Listen.Secure, err)
		}
		if c.Listen.TLS.Cert == "" || c.Listen.TLS.Key == "" || c.Listen.TLS.ClientCA == "" {
			bad("listen.secure needs listen.tls.cert, listen.tls.key and listen.tls.client_ca")
		}
	}
	if c.Capacity.MemoryMB < 0 || c.Capacity.DiskMB < 0 {
		bad("capacity.memory_mb and capacity.disk_mb must be >= 0 (0 = detect)")
	}
	if c.Capacity.MaxContainers <= 0 {
		bad("capacity.max_containers must be positive")
	}
	for name, dir := range c.PreloadedRootfs {
		if !idPattern.MatchString(name) {
			bad("preloaded_rootfs name %q is not a valid name", name)
		}
		if !filepath.IsAbs(dir) {
			bad("preloaded_rootfs %s: %q must be an absolute path", name, dir)
		}
	}
	switch c.Identity.KeyType {
	case "ecdsa-p256", "rsa-2048", "rsa-3072":
	default:
		bad("identity.key_type %q: must be ecdsa-p256, rsa-2048 or rsa-3072", c.Identity.KeyType)
	}
	if (c.Identity.CACert == "") != (c.Identity.CAKey == "") {
		bad("identity.ca_cert and identity.ca_key must be set together")
	}
	if time.Duration(c.Identity.Validity) < 10*time.Second {
		bad("identity.validity %s is too short (at least 10s)", c.Identity.Validity)
	}
	switch c.Proxy.Kind {
	case "cellproxy", "envoy":
	default:
		bad("proxy.kind %q: must be cellproxy or envoy", c.Proxy.Kind)
	}
	if c.Proxy.Kind == "envoy" && c.Proxy.Init != nil && *c.Proxy.Init {
		bad("proxy.init runs cellproxy only: Envoy keeps its runc exec (unset proxy.init)")
	}
	if c.Proxy.Kind == "envoy" && c.Proxy.Binary == "" {
		bad("proxy.kind envoy needs proxy.binary (the path of an Envoy build)")
	}
	if c.Proxy.MemoryOverheadMB < 0 {
		bad("proxy.memory_overhead_mb must be >= 0")
	}
	if c.Proxy.RequireClientCerts && c.Proxy.TrustedCA == "" {
		bad("proxy.require_client_certs needs proxy.trusted_ca")
	}
	if c.Proxy.UID == 0 || c.Proxy.GID == 0 {
		bad("proxy.uid and proxy.gid must not be 0: the proxy runs unprivileged")
	}
	errs = append(errs, c.identityCAReuse()...)
	switch c.Network.Mode {
	case "bridge", "host":
	default:
		bad("network.mode %q: must be bridge or host", c.Network.Mode)
	}
	if _, _, err := net.ParseCIDR(c.Network.Subnet); err != nil {
		bad("network.subnet %q: %v", c.Network.Subnet, err)
	}
	if _, _, err := ParsePortRange(c.Network.HostPortRange); err != nil {
		bad("network.host_port_range: %v", err)
	}
	if c.Network.ExternalIP != "" && net.ParseIP(c.Network.ExternalIP) == nil {
		bad("network.external_ip %q is not an IP address", c.Network.ExternalIP)
	}
	if !regexp.MustCompile(`^[a-z][a-z0-9]{0,31}$`).MatchString(c.Network.Name) {
		bad("network.name %q: must match [a-z][a-z0-9]{0,31}", c.Network.Name)
	}
	if c.Network.Bridge == "" || len(c.Network.Bridge) > 15 {
		bad("network.bridge %q: must be 1-15 characters (a Linux interface name)", c.Network.Bridge)
	}
	if c.Network.PortQuarantine < 0 {
		bad("network.port_quarantine must not be negative")
	}
	// The bound of network.MaxPoolSize (config does not link the network).
	if c.Network.PoolSize < 0 || c.Network.PoolSize > 256 {
		bad("network.pool_size %d: must be 0 (off) to 256", c.Network.PoolSize)
	}
	if _, err := netrules.ValidateEgressRules("network.egress.default", c.Network.Egress.Default); err != nil {
		bad("%v", err)
	}
	for _, e := range c.hostModeErrors() {
		bad("%s", e)
	}
	for _, u := range c.NATS.URLs {
		if !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
			bad("nats.urls: %q must start with nats:// or tls://", u)
		}
	}
	if len(c.NATS.URLs) == 0 {
		if _, _, err := net.SplitHostPort(c.NATS.EmbeddedListen); err != nil {
			bad("nats.embedded_listen %q: %v", c.NATS.EmbeddedListen, err)
		} else if !IsLoopback(c.NATS.EmbeddedListen) {
			bad("nats.embedded_listen %q must be a loopback address: for more than one machine use an external NATS (nats.urls)", c.NATS.EmbeddedListen)
		}
	}
	if (c.NATS.CredentialsFile != "" || c.NATS.NKeySeedFile != "") && len(c.NATS.URLs) == 0 {
		bad("nats.credentials_file and nats.nkey_seed_file are for an external NATS: set nats.urls too")
	}
	if c.NATS.CredentialsFile != "" && c.NATS.NKeySeedFile != "" {
		bad("nats.credentials_file and nats.nkey_seed_file: set one")
	}
	for key, path := range map[string]string{"credentials_file": c.NATS.CredentialsFile, "nkey_seed_file": c.NATS.NKeySeedFile} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			bad("nats.%s %q: %v", key, path, err)
		}
	}
	if a := c.NATS.EmbeddedAuth; (a.User == "") != (a.Password == "") {
		bad("nats.embedded_auth.user and nats.embedded_auth.password go together")
	}
	if t := c.NATS.TLS; t != (NATSTLS{}) {
		switch {
		case len(c.NATS.URLs) == 0:
			bad("nats.tls is for an external NATS: set nats.urls too (the embedded server listens on loopback without TLS)")
		case t.CACert == "":
			bad("nats.tls.ca_cert is required with nats.tls (the CA that signed the NATS servers' certificates)")
		case (t.Cert == "") != (t.Key == ""):
			bad("nats.tls.cert and nats.tls.key go together")
		}
		for key, path := range map[string]string{"ca_cert": t.CACert, "cert": t.Cert, "key": t.Key} {
			if path == "" {
				continue
			}
			if _, err := os.Stat(path); err != nil {
				bad("nats.tls.%s %q: %v", key, path, err)
			}
		}
	}
	if d := c.TrustedSystemCertificatesDir; d != "" {
		if fi, err := os.Stat(d); !filepath.IsAbs(d) || err != nil || !fi.IsDir() {
			bad("trusted_system_certificates_dir %q: must be an absolute path of a directory", d)
		}
	}
	for _, p := range c.BindMountAllowlist {
		if !filepath.IsAbs(p) {
			bad("bind_mount_allowlist: %q must be an absolute path", p)
		}
	}
	for _, e := range c.allowlistErrors() {
		bad("%s", e)
	}
	for name, d := range map[string]Duration{"reserved_expiration": c.ReservedExpiration, "start_timeout": c.StartTimeout,
		"stop_grace": c.StopGrace, "evacuation_timeout": c.EvacuationTimeout} {
		if d <= 0 {
			bad("%s must be positive", name)
		}
	}
	if c.HealthInterval < 0 || c.DrainWindow < 0 {
		bad("health_check_interval and drain_window must not be negative")
	}
	if c.Routing.RegisterInterval < Duration(time.Second) {
		bad("routing.register_interval must be at least 1s")
	}
	if c.DefaultUser == "" {
		bad("default_user must not be empty")
	}
	if c.DiskReserveMB < 0 {
		bad("disk_reserve_mb must be >= 0")
	}
	if d := c.Downloads; d.CacheMB < 1 || d.MaxArtifactMB < 1 || d.MaxConcurrent < 1 {
		bad("downloads.cache_mb, downloads.max_artifact_mb and downloads.max_concurrent must be at least 1")
	}
	if c.DefaultMaxPids < 16 {
		bad("default_max_pids %d: must be at least 16 (the app, its proxy and their threads)", c.DefaultMaxPids)
	}
	if c.LogMaxBytes < 4096 {
		bad("log_max_bytes must be at least 4096")
	}
	switch c.LogLevel {
	case "debug", "info", "error", "fatal":
	default:
		bad("log_level %q: must be debug, info, error or fatal", c.LogLevel)
	}
	if c.Diego != nil {
		errs = append(errs, c.Diego.validate(c)...)
	}
	return errors.Join(errs...)
}

// IsLoopback reports whether a listen address is on a loopback interface.
func IsLoopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ParsePortRange reads "LOW-HIGH".
func ParsePortRange(s string) (uint16, uint16, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want LOW-HIGH", s)
	}
	l, err1 := strconv.ParseUint(lo, 10, 16)
	h, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || l == 0 || l > h {
		return 0, 0, fmt.Errorf("%q: want LOW-HIGH with 1 <= LOW <= HIGH <= 65535", s)
	}
	return uint16(l), uint16(h), nil
}
