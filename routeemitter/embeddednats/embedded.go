package embeddednats

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/tedsuo/ifrit"

	"github.com/cellagent/cellagent/routeemitter/natsauth"
)

const (
	// embeddedMaxMemory and embeddedMaxStore bound JetStream on the cell: it
	// holds little more than the presence bucket.
	embeddedMaxMemory = 64 << 20
	embeddedMaxStore  = 256 << 20

	// readyPolls x readyPoll bounds the wait for the server to accept
	// clients; polling lets a fatal start error end the wait early.
	readyPolls = 100
	readyPoll  = 100 * time.Millisecond
)

// EmbeddedNATS runs a nats-server with JetStream inside the agent process,
// for a single machine without an external NATS. It is an ifrit.Runner; each
// Run starts a fresh server on the same address and store directory.
type EmbeddedNATS struct {
	logger   lager.Logger
	host     string
	port     int
	storeDir string

	// auth, when set (RequireAuth), is the one user clients must present.
	auth natsauth.EmbeddedAuth

	mu sync.Mutex
	// clientURL is guarded by mu; set once a server accepts clients.
	clientURL string
}

var _ ifrit.Runner = (*EmbeddedNATS)(nil)

// NewEmbeddedNATS prepares an embedded server listening on listen
// (host:port; port 0 picks a free port, see ClientURL) and keeping JetStream
// data under storeDir.
func NewEmbeddedNATS(logger lager.Logger, listen, storeDir string) (*EmbeddedNATS, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("embedded nats listen %q: bad port", listen)
	}
	if storeDir == "" {
		return nil, errors.New("embedded nats: store dir is required")
	}
	// Any process that reaches the server can publish router.register for
	// any hostname: it listens on loopback only (an external NATS is the
	// answer for more than one machine).
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("embedded nats listen %q: must be a loopback address", listen)
	}
	e := &EmbeddedNATS{
		logger:   logger.Session("embedded-nats"),
		host:     host,
		port:     port,
		storeDir: storeDir,
	}
	if port != 0 {
		e.clientURL = "nats://" + net.JoinHostPort(host, portStr)
	}
	return e, nil
}

// RequireAuth makes the server accept only clients presenting auth (call
// before Run).
func (e *EmbeddedNATS) RequireAuth(auth natsauth.EmbeddedAuth) { e.auth = auth }

// ClientURL is the URL clients connect to. With a fixed port it is known at
// once; with port 0 only after Run is ready.
func (e *EmbeddedNATS) ClientURL() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.clientURL
}

// Run starts the server, is ready when it accepts clients and shuts it down
// on any signal.
func (e *EmbeddedNATS) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	logger := e.logger.Session("run", lager.Data{"host": e.host, "port": e.port, "store-dir": e.storeDir})
	port := e.port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:             "cellagent-embedded",
		Host:                   e.host,
		Port:                   port,
		JetStream:              true,
		JetStreamMaxMemory:     embeddedMaxMemory,
		JetStreamMaxStore:      embeddedMaxStore,
		StoreDir:               e.storeDir,
		NoSigs:                 true,
		DisableJetStreamBanner: true,
		Username:               e.auth.User,
		Password:               e.auth.Password,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("create embedded nats server: %w", err)
	}
	adapter := &serverLogger{logger: logger}
	s.SetLoggerV2(adapter, false, false, false)
	s.Start()

	if err := e.waitReady(s, adapter); err != nil {
		s.Shutdown()
		s.WaitForShutdown()
		logger.Error("failed-to-start", err)
		return err
	}
	e.mu.Lock()
	e.clientURL = s.ClientURL()
	e.mu.Unlock()
	logger.Info("started", lager.Data{"url": s.ClientURL()})
	close(ready)

	<-signals
	s.Shutdown()
	s.WaitForShutdown()
	logger.Info("stopped")
	return nil
}

func (e *EmbeddedNATS) waitReady(s *server.Server, adapter *serverLogger) error {
	for range readyPolls {
		if s.ReadyForConnections(readyPoll) {
			return nil
		}
		if err := adapter.fatalErr(); err != nil {
			return fmt.Errorf("start embedded nats server: %w", err)
		}
	}
	return errors.New("start embedded nats server: not ready in time")
}

// serverLogger sends nats-server's log to lager. nats-server expects Fatalf
// to end the process; here it is recorded so Run can fail instead.
type serverLogger struct {
	logger lager.Logger

	mu sync.Mutex
	// fatal is guarded by mu.
	fatal error
}

func (l *serverLogger) fatalErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

func (l *serverLogger) Noticef(format string, v ...any) {
	l.logger.Info("server-notice", lager.Data{"message": fmt.Sprintf(format, v...)})
}

func (l *serverLogger) Warnf(format string, v ...any) {
	l.logger.Info("server-warning", lager.Data{"message": fmt.Sprintf(format, v...)})
}

func (l *serverLogger) Fatalf(format string, v ...any) {
	err := fmt.Errorf(format, v...)
	l.mu.Lock()
	if l.fatal == nil {
		l.fatal = err
	}
	l.mu.Unlock()
	l.logger.Error("server-fatal", err)
}

func (l *serverLogger) Errorf(format string, v ...any) {
	l.logger.Error("server-error", fmt.Errorf(format, v...))
}

func (l *serverLogger) Debugf(format string, v ...any) {
	l.logger.Debug("server-debug", lager.Data{"message": fmt.Sprintf(format, v...)})
}

func (l *serverLogger) Tracef(format string, v ...any) {
	l.logger.Debug("server-trace", lager.Data{"message": fmt.Sprintf(format, v...)})
}
