package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
)

// Config configures a Proxy. Zero durations take the defaults of
// DefaultConfig, except DrainTimeout, where zero means "close at once".
type Config struct {
	BootstrapPath string
	// DrainTimeout is how long open connections may continue after a
	// signal (Envoy's --drain-time-s).
	DrainTimeout time.Duration
	// PollInterval is how often the SDS files are checked for changes.
	PollInterval time.Duration
	// HandshakeTimeout bounds a client's TLS handshake.
	HandshakeTimeout time.Duration
	// MaxConnections caps the client connections served at once; one
	// more is closed at accept (each holds two descriptors: client and
	// app).
	MaxConnections int
	// IdleTimeout closes a connection on which neither side sent anything
	// for this long (Envoy's tcp_proxy idle_timeout, 1h by default); it
	// is noticed within twice that.
	IdleTimeout time.Duration
	Clock       clock.Clock
}

// DefaultConfig has Envoy's default drain time.
func DefaultConfig() Config {
	return Config{
		DrainTimeout:     600 * time.Second,
		PollInterval:     time.Second,
		HandshakeTimeout: 10 * time.Second,
		MaxConnections:   16384,
		IdleTimeout:      time.Hour,
		Clock:            clock.NewClock(),
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.BootstrapPath == "" {
		errs = append(errs, errors.New("bootstrap path is empty"))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("drain timeout %s is negative", c.DrainTimeout))
	}
	if c.PollInterval < 0 || c.HandshakeTimeout < 0 || c.IdleTimeout < 0 || c.MaxConnections < 0 {
		errs = append(errs, errors.New("poll interval, handshake and idle timeouts and max connections must not be negative"))
	}
	return errors.Join(errs...)
}

// readiness as /ready reports it, Envoy's words.
const (
	statePreInitializing int32 = iota
	stateLive
	stateDraining
)

var stateNames = map[int32]string{
	statePreInitializing: "PRE_INITIALIZING",
	stateLive:            "LIVE",
	stateDraining:        "DRAINING",
}

// Proxy is cellproxy. New loads and checks everything; Run serves.
type Proxy struct {
	logger lager.Logger
	cfg    Config
	clock  clock.Clock
	spec   *Spec

	secrets   map[SecretRef]*secretSource // fixed after New
	listeners []*listener                 // bound in Run
	// reloadMu serialises reloads (the poll and POST /secrets/reload):
	// it guards every secretSource's stamp and orders the listeners'
	// refreshes.
	reloadMu sync.Mutex
	state    atomic.Int32
	active   atomic.Int64 // client connections being served

	connsMu sync.Mutex
	conns   map[net.Conn]struct{} // guarded by connsMu

	loops         sync.WaitGroup // accept loops
	handlers      sync.WaitGroup // one per accepted connection
	stopAccepting chan struct{}
}

var _ ifrit.Runner = (*Proxy)(nil)

// New reads the bootstrap and every secret it names; any problem is an error
// that names the file and field.
func New(logger lager.Logger, cfg Config) (*Proxy, error) {
	d := DefaultConfig()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = d.PollInterval
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = d.HandshakeTimeout
	}
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = d.MaxConnections
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = d.IdleTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = d.Clock
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("proxy config: %w", err)
	}
	spec, err := LoadBootstrap(cfg.BootstrapPath)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		logger:        logger.Session("proxy"),
		cfg:           cfg,
		clock:         cfg.Clock,
		spec:          spec,
		secrets:       map[SecretRef]*secretSource{},
		conns:         map[net.Conn]struct{}{},
		stopAccepting: make(chan struct{}),
	}
	add := func(ref SecretRef, validation bool) error {
		if s, ok := p.secrets[ref]; ok {
			if s.validation != validation {
				return fmt.Errorf("%s: secret %s used both as certificate and as validation context", ref.Path, ref.Name)
			}
			return nil
		}
		s := &secretSource{ref: ref, validation: validation}
		s.stamp = statFile(ref.Path) // before reading: a change in between is seen next poll
		if err := s.load(); err != nil {
			return err
		}
		p.secrets[ref] = s
		return nil
	}
	for _, l := range spec.Listeners {
		if err := add(l.Cert, false); err != nil {
			return nil, err
		}
		if l.Validation != nil {
			if err := add(*l.Validation, true); err != nil {
				return nil, err
			}
		}
	}
	for _, l := range spec.Listeners {
		p.listeners = append(p.listeners, p.newListener(l))
	}
	return p, nil
}

// Run binds the admin and TLS listeners, reports ready, serves until a
// signal, then drains. Call it once per Proxy. It returns nil after a drain, an error when a
// listener cannot be bound.
func (p *Proxy) Run(signals <-chan os.Signal, ready chan<- struct{}) (retErr error) {
	logger := p.logger.Session("run")

	adminLn, err := net.Listen(network(p.spec.AdminAddr), p.spec.AdminAddr)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	admin := &http.Server{Handler: p.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
	adminDone := make(chan struct{})
	go func() {
		defer close(adminDone)
		_ = admin.Serve(adminLn)
	}()
	defer func() {
		_ = admin.Close()
		<-adminDone
	}()

	for i, l := range p.listeners {
		ln, err := net.Listen(network(l.spec.Addr), l.spec.Addr)
		if err != nil {
			for _, bound := range p.listeners[:i] {
				bound.ln.Close()
			}
			return fmt.Errorf("listener %s: %w", l.spec.Name, err)
		}
		l.ln = ln
	}
	for _, l := range p.listeners {
		p.loops.Add(1)
		go p.serve(logger, l)
	}

	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		p.watch(logger, stopWatch)
	}()
	defer func() {
		close(stopWatch)
		<-watchDone
	}()

	p.state.Store(stateLive)
	logger.Info("ready", lager.Data{"admin": p.spec.AdminAddr, "listeners": p.describeListeners()})
	close(ready)

	sig := <-signals
	logger.Info("signalled", lager.Data{"signal": sig.String()})
	p.drain(logger, signals)
	return nil
}

// drain stops accepting and waits for open connections, up to the drain
// timeout or a second signal, then closes what is left.
func (p *Proxy) drain(logger lager.Logger, signals <-chan os.Signal) {
	p.state.Store(stateDraining)
	close(p.stopAccepting)
	for _, l := range p.listeners {
		l.ln.Close()
	}
	p.loops.Wait() // no handlers.Add after this point

	done := make(chan struct{})
	go func() {
		p.handlers.Wait()
		close(done)
	}()
	logger.Info("drain-started", lager.Data{"open-connections": p.active.Load(), "timeout": p.cfg.DrainTimeout.String()})
	timer := p.clock.NewTimer(p.cfg.DrainTimeout)
	defer timer.Stop()
	select {
	case <-done:
		logger.Info("drained")
		return
	case <-timer.C():
		logger.Info("drain-timeout", lager.Data{"closing-connections": p.active.Load()})
	case sig := <-signals:
		logger.Info("drain-interrupted", lager.Data{"signal": sig.String(), "closing-connections": p.active.Load()})
	}
	p.closeAll()
	<-done
}

// watch polls the SDS files and publishes new secrets to new handshakes.
func (p *Proxy) watch(logger lager.Logger, stop <-chan struct{}) {
	t := p.clock.NewTicker(p.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C():
			_ = p.reload(logger)
		}
	}
}

// reload re-reads every SDS file that changed since it was last read and,
// when one did, gives new handshakes on every listener the new secrets.
// It answers the failures (the previous secret is kept for each).
func (p *Proxy) reload(logger lager.Logger) []error {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	changed, errs := p.reloadChangedLocked(logger)
	if changed {
		for _, l := range p.listeners {
			l.refresh(p.clock.Now)
		}
	}
	return errs
}

func (p *Proxy) reloadChangedLocked(logger lager.Logger) (changed bool, errs []error) {
	for _, s := range p.sortedSecrets() {
		st := statFile(s.ref.Path)
		if st == s.stamp {
			continue
		}
		s.stamp = st
		data := lager.Data{"secret": s.ref.Name, "path": s.ref.Path}
		if st.missing {
			err := fmt.Errorf("secret %s: %s is missing: keeping the loaded secret", s.ref.Name, s.ref.Path)
			logger.Error("secret-file-missing", err, data)
			errs = append(errs, err)
			continue
		}
		if err := s.load(); err != nil {
			logger.Error("secret-reload-failed", err, data)
			errs = append(errs, err)
			continue
		}
		data["version"] = s.version()
		if !s.validation {
			data["serial"] = serialHex(s.cert.Load().cert.Leaf)
		}
		logger.Info("secret-reloaded", data)
		changed = true
	}
	return changed, errs
}

func (p *Proxy) sortedSecrets() []*secretSource {
	out := make([]*secretSource, 0, len(p.secrets))
	for _, s := range p.secrets {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ref.Path != out[j].ref.Path {
			return out[i].ref.Path < out[j].ref.Path
		}
		return out[i].ref.Name < out[j].ref.Name
	})
	return out
}

func (p *Proxy) describeListeners() []string {
	out := make([]string, 0, len(p.listeners))
	for _, l := range p.listeners {
		out = append(out, fmt.Sprintf("%s %s->%s", l.spec.Name, l.ln.Addr(), l.spec.Upstream))
	}
	return out
}

// network keeps Envoy's meaning of an address: 0.0.0.0 is IPv4 only, where
// Go's "tcp" would listen on both families.
func network(addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return "tcp6"
	}
	return "tcp4"
}
