package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// serverName is the SAN of the server certificate and the SNI the load
// generator sends, to every TLS target alike.
const serverName = "proxybench.local"

// pki is a throwaway CA and one server certificate it signed, both ECDSA
// P-256 (what the agent's identity certificates are).
type pki struct {
	certPEM, keyPEM []byte // server leaf and its key
	pool            *x509.CertPool
}

func newPKI() (*pki, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "proxybench CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create ca: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: serverName},
		DNSNames:     []string{serverName},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create server certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &pki{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		pool:    pool,
	}, nil
}

// haproxyConfig is haproxy set up to do what cellproxy does, as closely as
// its knobs allow:
//   - mode tcp: TLS is terminated and the bytes are copied to the app
//     (cellproxy's tcp_proxy), no HTTP parsing;
//   - one thread on one CPU (cellproxy runs with GOMAXPROCS=1 on that CPU);
//   - TLS 1.2+ with the TLS 1.2 suites proxyconfig writes, TLS 1.3 suites in
//     Go's server order (AES-128-GCM first; OpenSSL would pick AES-256),
//     groups X25519 and P-256 (Envoy's defaults);
//   - the same 250ms connect timeout; no logging (cellproxy logs nothing
//     per connection at its default level); idle timeouts far beyond the run.
func haproxyConfig(listenPort, appPort uint16, pemPath string, ciphers []string, maxconn int) string {
	return fmt.Sprintf(`global
    nbthread 1
    maxconn %[4]d
    ssl-default-bind-ciphers %[5]s
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode tcp
    maxconn %[4]d
    timeout connect 250ms
    timeout client 1h
    timeout server 1h

frontend tls
    bind 127.0.0.1:%[1]d ssl crt %[3]s curves X25519:P-256
    default_backend app

backend app
    server app 127.0.0.1:%[2]d
`, listenPort, appPort, pemPath, maxconn, strings.Join(ciphers, ":"))
}
