package proxyhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/cellagent/cellagent/credmanager"
)

// verifier makes TLS handshakes the way Gorouter does to a backend:
// RootCAs = the identity CA, ServerName = the instance guid, Go's standard
// hostname check against the DNS SANs.
type verifier struct {
	roots *x509.CertPool
	// sessions lets liveness checks resume TLS sessions (no certificate
	// signature or verification); never used where the served serial
	// matters, since a resumed session reports the old certificate.
	sessions tls.ClientSessionCache
}

func newVerifier(caPEM []byte) (*verifier, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("identity CA: no certificate to trust")
	}
	return &verifier{roots: pool, sessions: tls.NewLRUClientSessionCache(1024)}, nil
}

// tlsConfig is what both checks share. X25519 alone: the default hybrid
// post-quantum exchange was ~14% of the agent's CPU in these checks; they
// are local liveness and identity checks, not long-lived secrets.
func (v *verifier) tlsConfig(guid string) *tls.Config {
	return &tls.Config{ServerName: guid, RootCAs: v.roots, MinVersion: tls.VersionTLS12,
		CurvePreferences: []tls.CurveID{tls.X25519}}
}

// dial connects to addr and runs the TLS handshake, both within 2s. The
// caller closes the connection (also when the handshake failed).
func dial(ctx context.Context, addr string, cfg *tls.Config) (*tls.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = raw.SetDeadline(time.Now().Add(2 * time.Second))
	conn := tls.Client(raw, cfg)
	return conn, conn.HandshakeContext(dctx)
}

// alive completes a (resumed when possible) TLS handshake: cheap enough for
// periodic health checks, and unlike a TCP connect it notices a proxy that
// accepts connections but no longer answers.
func (v *verifier) alive(ctx context.Context, addr, guid string) error {
	cfg := v.tlsConfig(guid)
	cfg.ClientSessionCache = v.sessions
	conn, err := dial(ctx, addr, cfg)
	if conn == nil {
		return err
	}
	defer conn.Close()
	// With client certificates required, the server's refusal of our
	// absent certificate still proves it answers TLS.
	if err != nil && len(conn.ConnectionState().PeerCertificates) == 0 {
		return err
	}
	// Read the session ticket the server sends after the handshake, so the
	// next check can resume.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, _ = conn.Read(make([]byte, 1))
	return nil
}

// handshake answers the serial of the verified leaf the proxy serves. With
// client certificates required, the server's rejection of our (absent)
// client certificate comes after the server was verified (TLS 1.3), so the
// serial captured in VerifyConnection still counts.
func (v *verifier) handshake(ctx context.Context, addr, guid string) (string, error) {
	var serial string
	cfg := v.tlsConfig(guid)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) > 0 {
			serial = credmanager.FormatSerial(cs.PeerCertificates[0].SerialNumber)
		}
		return nil
	}
	conn, err := dial(ctx, addr, cfg)
	if conn == nil {
		return "", err
	}
	defer conn.Close()
	if serial == "" {
		if err == nil {
			err = fmt.Errorf("no certificate from %s", addr)
		}
		return "", err
	}
	return serial, nil
}
