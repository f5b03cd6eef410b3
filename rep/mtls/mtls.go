// Package mtls builds the mutual-TLS configurations a Diego cell uses:
// as a client of BBS and Locket, and as the rep server the auctioneer and
// BBS call. Diego's servers accept TLS 1.2 with ECDHE-AES-GCM suites or
// TLS 1.3, so that is what these configs offer.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

var suites = []uint16{
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
}

// Files are PEM files: the CA that signed the peer, our certificate and key.
type Files struct {
	CACert string
	Cert   string
	Key    string
}

func (f Files) load() (*x509.CertPool, tls.Certificate, error) {
	pem, err := os.ReadFile(f.CACert)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("read ca cert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, tls.Certificate{}, fmt.Errorf("ca cert %s: no PEM certificate in it", f.CACert)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("load cert %s and key %s: %w", f.Cert, f.Key, err)
	}
	return pool, cert, nil
}

// Client is a client config that presents our certificate and trusts only
// the given CA.
func Client(f Files) (*tls.Config, error) {
	pool, cert, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert},
		MinVersion: tls.VersionTLS12, CipherSuites: suites}, nil
}

// Server is a server config that requires a client certificate signed by
// the given CA.
func Server(f Files) (*tls.Config, error) {
	pool, cert, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
		Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, CipherSuites: suites}, nil
}
