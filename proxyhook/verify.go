package proxyhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/cellagent/cellagent/credmanager"
	"github.com/cellagent/cellagent/internal/cellinit"
)

// verifier makes TLS handshakes the way Gorouter does to a backend:
// RootCAs = the identity CA, ServerName = the instance guid, Go's standard
// hostname check against the DNS SANs.
type verifier struct {
	roots *x509.CertPool

	mu     sync.Mutex        // guards hellos
	hellos map[string][]byte // guid -> ClientHello record, for probe
}

func newVerifier(caPEM []byte) (*verifier, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("identity CA: no certificate to trust")
	}
	return &verifier{roots: pool, hellos: map[string][]byte{}}, nil
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

// probe sends a ClientHello made once for guid and reads the header of the
// record that answers it: a handshake record (the ServerHello) means the
// proxy accepted the connection and its TLS stack answers; unlike a TCP
// connect, which the kernel completes for a proxy that no longer accepts,
// it needs the proxy. The agent does no cryptography for it: the periodic
// health monitoring's cost, once a resumed handshake per check
// (BENCHMARKS.md, idle profile), is a connect, a write and a read.
//
// cellproxy dials the app before it answers a ClientHello and closes the
// connection when the app does not accept, so with cellproxy an answer also
// proves the app listens (see Config.UpstreamBeforeHandshake).
func (v *verifier) probe(ctx context.Context, addr, guid string) error {
	hello, err := v.clientHello(guid)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	return cellinit.HelloAnswered(conn, hello)
}

// clientHello answers the ClientHello crypto/tls sends for guid (as
// ServerName), made once and kept (a few hundred bytes per instance).
func (v *verifier) clientHello(guid string) ([]byte, error) {
	v.mu.Lock()
	hello, ok := v.hellos[guid]
	v.mu.Unlock()
	if ok {
		return hello, nil
	}
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tc := tls.Client(client, v.tlsConfig(guid))
		_ = tc.Handshake() // ends when server closes
		client.Close()
	}()
	defer func() { server.Close(); <-done }()
	_ = server.SetDeadline(time.Now().Add(2 * time.Second))
	var hdr [5]byte
	if _, err := io.ReadFull(server, hdr[:]); err != nil {
		return nil, fmt.Errorf("make a ClientHello: %w", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:5]))
	if _, err := io.ReadFull(server, body); err != nil {
		return nil, fmt.Errorf("make a ClientHello: %w", err)
	}
	hello = append(hdr[:], body...)
	v.mu.Lock()
	v.hellos[guid] = hello
	v.mu.Unlock()
	return hello, nil
}

// forget drops what the verifier keeps for guid.
func (v *verifier) forget(guid string) {
	v.mu.Lock()
	delete(v.hellos, guid)
	v.mu.Unlock()
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
