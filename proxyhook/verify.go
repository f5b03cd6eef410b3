package proxyhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"
)

// verifier makes TLS handshakes the way Gorouter does to a backend:
// RootCAs = the identity CA, ServerName = the instance guid, Go's standard
// hostname check against the DNS SANs.
type verifier struct {
	roots *x509.CertPool
}

func newVerifier(caPEM []byte) (*verifier, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("identity CA: no certificate to trust")
	}
	return &verifier{roots: pool}, nil
}

// handshake answers the serial of the verified leaf the proxy serves. With
// client certificates required, the server's rejection of our (absent)
// client certificate comes after the server was verified (TLS 1.3), so the
// serial captured in VerifyConnection still counts.
func (v *verifier) handshake(ctx context.Context, addr, guid string) (string, error) {
	var serial string
	cfg := &tls.Config{
		ServerName: guid,
		RootCAs:    v.roots,
		MinVersion: tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				serial = cs.PeerCertificates[0].SerialNumber.Text(16)
			}
			return nil
		},
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(2 * time.Second))
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(dctx); err != nil && serial == "" {
		return "", err
	}
	if serial == "" {
		return "", fmt.Errorf("no certificate from %s", addr)
	}
	return serial, nil
}
