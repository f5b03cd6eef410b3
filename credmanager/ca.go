package credmanager

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/internal/atomicfile"
)

const (
	devCADir      = "identity"
	devCACertFile = "ca.crt"
	devCAKeyFile  = "ca.key"
	devCAValidity = 10 * 365 * 24 * time.Hour
)

// authority is the loaded issuing CA. It is read-only after New (tests swap
// signer before anything runs).
type authority struct {
	cert     *x509.Certificate // the issuer: the first certificate of the file
	signer   crypto.Signer
	chainPEM []byte    // every certificate of the file, issuer first: appended to instance.crt
	rootPEM  []byte    // the last certificate of the file: what verifiers trust
	notAfter time.Time // the earliest NotAfter in the file: no leaf may outlive it
	certFile string
}

func (a *authority) sign(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, pub, a.signer)
	if err != nil {
		return nil, fmt.Errorf("sign with ca %s: %w", a.certFile, err)
	}
	return der, nil
}

// loadCA reads and checks an issuing CA: certFile holds the issuer, then
// optionally the certificates above it; keyFile the issuer's private key.
// Every error names the file and the problem.
func loadCA(certFile, keyFile string, now time.Time) (*authority, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read ca_cert %s: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read ca_key %s: %w", keyFile, err)
	}

	var certs []*x509.Certificate
	var chain bytes.Buffer
	var lastPEM []byte
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca_cert %s: certificate %d: %w", certFile, len(certs)+1, err)
		}
		certs = append(certs, c)
		lastPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes})
		chain.Write(lastPEM)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("ca_cert %s: no CERTIFICATE PEM block found", certFile)
	}

	issuer := certs[0]
	if !issuer.BasicConstraintsValid || !issuer.IsCA {
		return nil, fmt.Errorf("ca_cert %s: certificate %q is not a CA (basic constraints CA:FALSE)", certFile, issuer.Subject.CommonName)
	}
	if issuer.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("ca_cert %s: certificate %q lacks the keyCertSign key usage", certFile, issuer.Subject.CommonName)
	}
	notAfter := issuer.NotAfter
	for i, c := range certs {
		if now.After(c.NotAfter) {
			return nil, fmt.Errorf("ca_cert %s: certificate %d (%q) expired at %s", certFile, i+1, c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339))
		}
		if now.Before(c.NotBefore) {
			return nil, fmt.Errorf("ca_cert %s: certificate %d (%q) is not valid before %s", certFile, i+1, c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339))
		}
		if c.NotAfter.Before(notAfter) {
			notAfter = c.NotAfter
		}
		if i > 0 {
			if err := certs[i-1].CheckSignatureFrom(c); err != nil {
				return nil, fmt.Errorf("ca_cert %s: certificate %d (%q) did not sign certificate %d (%q): chain out of order: %w",
					certFile, i+1, c.Subject.CommonName, i, certs[i-1].Subject.CommonName, err)
			}
		}
	}

	signer, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ca_key %s: %w", keyFile, err)
	}
	switch signer.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey:
	default:
		return nil, fmt.Errorf("ca_key %s: unsupported key type %T (want ECDSA or RSA)", keyFile, signer)
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(issuer.PublicKey) {
		return nil, fmt.Errorf("ca_key %s: does not match the public key of certificate %q in %s", keyFile, issuer.Subject.CommonName, certFile)
	}

	return &authority{
		cert:     issuer,
		signer:   signer,
		chainPEM: chain.Bytes(),
		rootPEM:  lastPEM,
		notAfter: notAfter,
		certFile: certFile,
	}, nil
}

// parsePrivateKey takes the first private key block of a PEM file: PKCS#8,
// SEC1 (EC) or PKCS#1 (RSA). Other blocks (such as EC PARAMETERS) are skipped.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no private key PEM block found")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("encrypted private keys are not supported")
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported key type %T", key)
		}
		return signer, nil
	}
}

// loadOrCreateDevCA loads the dev CA of dataDir, creating it first when its
// certificate does not exist yet. A dev CA is trusted by nothing outside
// this cell, so it is announced loudly every time.
func loadOrCreateDevCA(logger lager.Logger, dataDir string, now time.Time) (*authority, error) {
	dir := filepath.Join(dataDir, devCADir)
	certFile := filepath.Join(dir, devCACertFile)
	keyFile := filepath.Join(dir, devCAKeyFile)

	_, err := os.Stat(certFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// The certificate is renamed into place last, so a missing ca.crt
		// means no dev CA was ever complete here (a stray ca.key is replaced).
		if err := createDevCA(dir, certFile, keyFile, now); err != nil {
			return nil, err
		}
		logger.Info("dev-ca-created", lager.Data{"ca-cert": certFile, "ca-key": keyFile})
	case err != nil:
		return nil, fmt.Errorf("dev ca %s: %w", certFile, err)
	}

	ca, err := loadCA(certFile, keyFile, now)
	if err != nil {
		return nil, fmt.Errorf("dev ca: %w", err)
	}
	logger.Error("dev-ca-in-use",
		errors.New("no identity ca_cert/ca_key configured: instance certificates are signed by a development CA that nothing outside this cell trusts; do not use in production"),
		lager.Data{"ca-cert": certFile, "not-after": ca.notAfter.UTC()})
	return ca, nil
}

// devCADurability: the dev CA is made once and signs every instance
// certificate of the cell; a machine crash must not leave it half written
// or lost after instances were signed by it, so each file is synced and so
// is its directory (key first: a certificate without its key is refused at
// the next start; a key without its certificate is made again).
const devCADurability = atomicfile.SyncFileAndDir

func createDevCA(dir, certFile, keyFile string, now time.Time) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create dev ca dir %s: %w", dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("create dev ca: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return fmt.Errorf("create dev ca: %w", err)
	}
	hostname, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "cellagent dev CA " + hostname, Organization: []string{"cellagent (development only)"}},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(devCAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("create dev ca: sign: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("create dev ca: marshal key: %w", err)
	}
	if err := atomicfile.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600, devCADurability); err != nil {
		return fmt.Errorf("create dev ca: %w", err)
	}
	if err := atomicfile.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644, devCADurability); err != nil {
		return fmt.Errorf("create dev ca: %w", err)
	}
	return nil
}
