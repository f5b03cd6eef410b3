package routeemitter

import (
	"errors"
	"fmt"
	"net"
	"time"

	"code.cloudfoundry.org/clock"

	"github.com/cellagent/cellagent/routeemitter/natsauth"
)

const (
	// DefaultEmbeddedListen is where the embedded NATS server listens.
	DefaultEmbeddedListen = "127.0.0.1:4222"
	// DefaultRegisterInterval is used until a router tells otherwise
	// (Gorouter's own default minimumRegisterIntervalInSeconds).
	DefaultRegisterInterval = 20 * time.Second
	// DefaultPresenceInterval is how often the cell presence is published.
	DefaultPresenceInterval = 5 * time.Second
	// DefaultReconnectWait is the pause between NATS reconnect attempts.
	DefaultReconnectWait = 2 * time.Second
	// DefaultFlushTimeout bounds the synchronous flush of Unregister.
	DefaultFlushTimeout = 2 * time.Second
	// DefaultAdoptionGrace is how long after Recover a kept guid may go
	// without Register before its journaled routes are unregistered.
	DefaultAdoptionGrace = 5 * time.Minute

	// PresenceBucket is the JetStream key-value bucket holding cell presence.
	PresenceBucket = "cellagent-cells"
)

// Config configures an Emitter.
type Config struct {
	// URLs of an external NATS cluster. Empty: connect to the embedded
	// server on EmbeddedListen (started separately with NewEmbeddedNATS).
	URLs []string
	// TLS, when CACert is set, verifies an external server against CACert
	// (PEM file); with Cert and Key it also presents that client
	// certificate (NATS servers with verify: true). User and password go
	// in the URLs (nats://user:pass@host:4222).
	TLS TLSFiles
	// EmbeddedListen is host:port of the embedded server.
	EmbeddedListen string
	// EmbeddedAuth is presented to the embedded server (natsauth.EnsureEmbeddedAuth).
	EmbeddedAuth natsauth.EmbeddedAuth
	// CredentialsFile (a NATS .creds file: JWT and nkey seed) or
	// NKeySeedFile (an nkey seed) authenticate to an external NATS.
	CredentialsFile, NKeySeedFile string
	// DataDir is the agent's data directory; the journal lives in
	// DataDir/routeemitter.
	DataDir string

	CellID string
	Zone   string
	// APIAddress is published in the cell presence when the presence
	// callback leaves it empty.
	APIAddress string

	// DefaultRegisterInterval applies until a router answers router.greet
	// or sends router.start.
	DefaultRegisterInterval time.Duration
	// InstanceAddress registers the container IP and container ports instead
	// of the cell's external IP and host ports.
	InstanceAddress bool

	// PresenceInterval is how often the cell presence is written.
	PresenceInterval time.Duration
	// PresenceTTL is the bucket TTL used when the bucket is created;
	// 0 means 3 x PresenceInterval.
	PresenceTTL time.Duration

	// ReconnectWait is the pause between NATS reconnect attempts.
	ReconnectWait time.Duration
	// FlushTimeout bounds the flush in Unregister and the JetStream calls.
	FlushTimeout time.Duration
	// AdoptionGrace: journaled routes of a guid that Recover kept but that
	// is neither registered nor unregistered within this time are
	// unregistered (TLS endpoints are never pruned by Gorouter).
	AdoptionGrace time.Duration

	Clock clock.Clock
}

// DefaultConfig answers a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		EmbeddedListen:          DefaultEmbeddedListen,
		DefaultRegisterInterval: DefaultRegisterInterval,
		PresenceInterval:        DefaultPresenceInterval,
		ReconnectWait:           DefaultReconnectWait,
		FlushTimeout:            DefaultFlushTimeout,
		AdoptionGrace:           DefaultAdoptionGrace,
		Clock:                   clock.NewClock(),
	}
}

// withDefaults fills zero fields with defaults, so callers may set only what
// they care about.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.EmbeddedListen == "" {
		c.EmbeddedListen = d.EmbeddedListen
	}
	if c.DefaultRegisterInterval == 0 {
		c.DefaultRegisterInterval = d.DefaultRegisterInterval
	}
	if c.PresenceInterval == 0 {
		c.PresenceInterval = d.PresenceInterval
	}
	if c.PresenceTTL == 0 {
		c.PresenceTTL = 3 * c.PresenceInterval
	}
	if c.ReconnectWait == 0 {
		c.ReconnectWait = d.ReconnectWait
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = d.FlushTimeout
	}
	if c.AdoptionGrace == 0 {
		c.AdoptionGrace = d.AdoptionGrace
	}
	if c.Clock == nil {
		c.Clock = d.Clock
	}
	return c
}

// Validate returns every problem of the configuration at once. Zero values
// that have defaults are accepted.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is required"))
	}
	if c.CellID == "" {
		errs = append(errs, errors.New("cell id is required"))
	} else if !validKey(c.CellID) {
		errs = append(errs, fmt.Errorf("cell id %q: only letters, digits, '-', '_', '=' and '.' are allowed", c.CellID))
	}
	if len(c.URLs) == 0 && c.EmbeddedListen != "" {
		if _, _, err := net.SplitHostPort(c.EmbeddedListen); err != nil {
			errs = append(errs, fmt.Errorf("embedded listen %q: %w", c.EmbeddedListen, err))
		}
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"default register interval", c.DefaultRegisterInterval},
		{"presence interval", c.PresenceInterval},
		{"presence ttl", c.PresenceTTL},
		{"reconnect wait", c.ReconnectWait},
		{"flush timeout", c.FlushTimeout},
		{"adoption grace", c.AdoptionGrace},
	} {
		if d.d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", d.name))
		}
	}
	if c.PresenceTTL != 0 && c.PresenceInterval != 0 && c.PresenceTTL <= c.PresenceInterval {
		errs = append(errs, errors.New("presence ttl must be longer than the presence interval"))
	}
	return errors.Join(errs...)
}

// validKey reports whether s can be a JetStream key-value key.
func validKey(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '-', r == '_', r == '=', r == '.':
		default:
			return false
		}
	}
	return s != "" && s[0] != '.' && s[len(s)-1] != '.'
}

// TLSFiles are PEM files for a TLS connection to NATS.
type TLSFiles struct {
	CACert, Cert, Key string
}
