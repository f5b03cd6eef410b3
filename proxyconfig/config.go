package proxyconfig

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"path"
	"strconv"
	"time"
)

// File and secret names inside the proxy directory. Envoy and cellproxy find
// them through the bootstrap; the names are fixed so the agent can clean up.
const (
	BootstrapFile         = "envoy.yaml"
	CertAndKeyFile        = "sds-id-cert-and-key.yaml"
	ValidationContextFile = "sds-id-validation-context.yaml"

	CertAndKeySecret        = "id-cert-and-key"
	ValidationContextSecret = "id-validation-context"

	// C2CCertAndKeyFile and C2CCertAndKeySecret hold the
	// container-to-container certificate served on C2CTLSPort (Diego's names).
	C2CCertAndKeyFile   = "sds-c2c-cert-and-key.yaml"
	C2CCertAndKeySecret = "c2c-cert-and-key"

	// DefaultConfigDir is where the host directory is mounted in the container.
	DefaultConfigDir = "/etc/cf-assets/envoy_config"
)

// CipherSuites are the TLS 1.2 suites the listeners offer, in BoringSSL
// names (what Envoy's tls_params take). TLS 1.3 suites are not configurable.
var CipherSuites = []string{
	"ECDHE-ECDSA-AES128-GCM-SHA256",
	"ECDHE-RSA-AES128-GCM-SHA256",
	"ECDHE-ECDSA-AES256-GCM-SHA384",
	"ECDHE-RSA-AES256-GCM-SHA384",
	"ECDHE-ECDSA-CHACHA20-POLY1305",
	"ECDHE-RSA-CHACHA20-POLY1305",
}

// Config is what the agent decides about a container's proxy. Zero fields
// take the values of DefaultConfig.
type Config struct {
	// RequireClientCerts makes every listener demand a client certificate
	// signed by TrustedCAPEM whose DNS or URI SAN equals one of VerifySAN
	// (any certificate from the CA when VerifySAN is empty).
	RequireClientCerts bool
	TrustedCAPEM       []byte
	VerifySAN          []string
	// ConfigDir is the in-container path of the proxy directory.
	ConfigDir string
	// DrainTimeout goes on the proxy's command line (--drain-time-s).
	DrainTimeout time.Duration
	// AppHost is the address the app listens on, as seen from the proxy.
	AppHost string
	// ConnectTimeout bounds the proxy's dial to the app.
	ConnectTimeout time.Duration
	// NodeID, when set, becomes Envoy's node.id (shows in its admin output).
	NodeID string
	// LogLevel, when set, goes on the command line as --log-level (Diego
	// runs Envoy with "critical"; cellproxy's own logs are kept at info).
	LogLevel string
}

// EnvoyLogLevel is the log level Diego runs Envoy with.
const EnvoyLogLevel = "critical"

// DefaultConfig returns the defaults: Diego's directory, drain time and
// connect timeout; the app reached on loopback.
func DefaultConfig() Config {
	return Config{
		ConfigDir:      DefaultConfigDir,
		DrainTimeout:   900 * time.Second,
		AppHost:        "127.0.0.1",
		ConnectTimeout: 250 * time.Millisecond,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.ConfigDir == "" {
		c.ConfigDir = d.ConfigDir
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = d.DrainTimeout
	}
	if c.AppHost == "" {
		c.AppHost = d.AppHost
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = d.ConnectTimeout
	}
	return c
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if !path.IsAbs(c.ConfigDir) {
		errs = append(errs, fmt.Errorf("config dir %q is not absolute", c.ConfigDir))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("drain timeout %s is negative", c.DrainTimeout))
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("connect timeout %s is negative", c.ConnectTimeout))
	}
	for i, san := range c.VerifySAN {
		if san == "" {
			errs = append(errs, fmt.Errorf("verify san %d is empty", i))
		}
	}
	if c.RequireClientCerts {
		if err := checkCAPEM(c.TrustedCAPEM); err != nil {
			errs = append(errs, fmt.Errorf("trusted ca: %w", err))
		}
	}
	return errors.Join(errs...)
}

func checkCAPEM(data []byte) error {
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %w", n, err)
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM certificate")
	}
	return nil
}

// Command is the proxy's argv for a binary mounted in the container; the
// flags are Envoy's, which cellproxy accepts too.
func Command(proxyBinary string, cfg Config) []string {
	cfg = cfg.withDefaults()
	argv := []string{
		proxyBinary,
		"-c", path.Join(cfg.ConfigDir, BootstrapFile),
		"--drain-time-s", strconv.FormatInt(int64(cfg.DrainTimeout.Round(time.Second)/time.Second), 10),
	}
	if cfg.LogLevel != "" {
		argv = append(argv, "--log-level", cfg.LogLevel)
	}
	return argv
}
