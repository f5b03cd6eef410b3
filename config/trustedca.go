package config

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
)

// devIdentityCACert is where credmanager keeps the CA it makes when
// identity.ca_cert is not set (credmanager's devCADir/devCACertFile).
func (c Config) devIdentityCACert() string { return filepath.Join(c.DataDir, "identity", "ca.crt") }

// identityCAReuse answers an error for each of listen.tls.client_ca and
// proxy.trusted_ca that trusts a certificate of the identity CA. Every
// instance certificate has the client-auth usage, so trusting that CA for
// clients lets every tenant authenticate as an orchestrator (listen) or as
// a peer app (proxy). Certificates are compared, not paths: a copy of the
// CA file is the same CA. Files that cannot be read are left to the code
// that loads them.
func (c Config) identityCAReuse() []error {
	identityFile := c.Identity.CACert
	if identityFile == "" {
		identityFile = c.devIdentityCACert()
	}
	identity := certsIn(identityFile)
	if len(identity) == 0 {
		return nil
	}
	var errs []error
	for _, k := range []struct{ key, path string }{
		{"listen.tls.client_ca", c.Listen.TLS.ClientCA}, {"proxy.trusted_ca", c.Proxy.TrustedCA},
	} {
		if k.path == "" {
			continue
		}
		for _, cert := range certsIn(k.path) {
			if containsCert(identity, cert) {
				errs = append(errs, fmt.Errorf("%s %s trusts the identity CA (%q, from %s): every instance certificate would authenticate; use a CA that signs only the clients you mean",
					k.key, k.path, cert.Subject.String(), identityFile))
				break
			}
		}
	}
	return errs
}

// certsIn parses every CERTIFICATE block of a PEM file (none when the file
// cannot be read).
func certsIn(path string) []*x509.Certificate {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

func containsCert(set []*x509.Certificate, c *x509.Certificate) bool {
	for _, s := range set {
		if bytes.Equal(s.Raw, c.Raw) {
			return true
		}
	}
	return false
}
