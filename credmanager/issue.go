package credmanager

import (
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
	"math/big"
	"net"
	"time"
)

// Identity is what an instance certificate says about its instance.
type Identity struct {
	// GUID becomes CN, DNS SAN and the name of the host directory.
	GUID string
	// IPs are the container's addresses (IPv4 and IPv6), put in IP SANs.
	IPs []net.IP
	// OrganizationalUnits go into Subject OU, in order
	// (e.g. "organization:o1", "space:s1", "app:a1").
	OrganizationalUnits []string
	// UID and GID own instance.key (mode 0600): the container's user.
	UID, GID int
	// DNSNames are DNS SANs after the guid: the internal route hostnames
	// of a container-to-container certificate (IssueC2C).
	DNSNames []string
}

// Validate checks everything that Issue checks before touching the disk.
func (id Identity) Validate() error {
	var errs []error
	if err := ValidateGUID(id.GUID); err != nil {
		errs = append(errs, err)
	}
	if err := ValidateCertificateProperties(id.OrganizationalUnits); err != nil {
		errs = append(errs, err)
	}
	if id.UID < 0 || id.GID < 0 {
		errs = append(errs, fmt.Errorf("uid %d / gid %d: must not be negative", id.UID, id.GID))
	}
	for _, n := range id.DNSNames {
		if !validDNSName(n) {
			errs = append(errs, fmt.Errorf("dns name %q: letters, digits, '-' and '.' only, 1 to 253 characters", n))
		}
	}
	for _, ip := range id.IPs {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			errs = append(errs, fmt.Errorf("ip %v: not an IPv4 or IPv6 address", []byte(ip)))
		}
	}
	return errors.Join(errs...)
}

// Credential describes one issued certificate. Its JSON form is what
// GET /v1/containers/{guid} shows under "credentials".
type Credential struct {
	// Serial is the certificate's serial number in lower-case hexadecimal
	// without leading zeros or colons: FormatSerial(cert.SerialNumber).
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// Rotations counts the certificates written after the first one.
	Rotations int `json:"rotations"`

	// CertPEM (leaf then chain) and KeyPEM (PKCS#1 for RSA, SEC1 for ECDSA:
	// see marshalKey) are the bytes written to
	// instance.crt and instance.key, for handlers that write them elsewhere
	// (the proxy's SDS file). Never marshalled.
	CertPEM []byte `json:"-"`
	KeyPEM  []byte `json:"-"`
}

// FormatSerial is how Credential.Serial spells a serial number; a verifier
// comparing the serial a TLS peer presents uses it too.
func FormatSerial(serial *big.Int) string { return serial.Text(16) }

func generateKey(kt KeyType) (crypto.Signer, error) {
	switch kt {
	case KeyTypeECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyTypeRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case KeyTypeRSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	}
	return nil, ValidateKeyType(kt)
}

// newSerial returns a positive random serial of up to 128 bits.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generate serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func leafTemplate(id Identity, serial *big.Int, notBefore, notAfter time.Time, key crypto.Signer) *x509.Certificate {
	usage := x509.KeyUsageDigitalSignature
	if _, ok := key.(*rsa.PrivateKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	var ips []net.IP
	for _, ip := range id.IPs {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		ips = append(ips, ip)
	}
	return &x509.Certificate{
		SerialNumber: serial,
		// Diego's credmanager (createCertificateTemplate) uses exactly this
		// pkix.Name, so the DER subject is byte for byte Diego's: the OUs in
		// one multi-valued RDN, which DER sorts by encoding (shortest first
		// for the usual app:, space:, organization: values), then CN.
		// Libraries that match the subject string (Steeltoe) expect it.
		Subject: pkix.Name{
			CommonName:         id.GUID,
			OrganizationalUnit: id.OrganizationalUnits,
		},
		DNSNames:              append([]string{id.GUID}, id.DNSNames...),
		IPAddresses:           ips,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
}

// issue makes a fresh key and a certificate for it, signed by ca. It touches
// no file.
func issue(ca *authority, kt KeyType, id Identity, now time.Time, validity time.Duration) (Credential, error) {
	if !now.Before(ca.notAfter) {
		return Credential{}, fmt.Errorf("ca %s expired at %s", ca.certFile, ca.notAfter.UTC().Format(time.RFC3339))
	}
	// x509 keeps whole seconds; truncating here makes the Credential equal
	// to what Adopt reads back from the certificate.
	notBefore := now.Add(-Backdate).Truncate(time.Second)
	notAfter := now.Add(validity).Truncate(time.Second)
	if notAfter.After(ca.notAfter) {
		// A leaf that outlives its CA fails verification anyway; a shorter
		// one gets rotated (and so re-clamped) in time.
		notAfter = ca.notAfter
	}
	key, err := generateKey(kt)
	if err != nil {
		return Credential{}, fmt.Errorf("generate %s key: %w", kt, err)
	}
	serial, err := newSerial()
	if err != nil {
		return Credential{}, err
	}
	tmpl := leafTemplate(id, serial, notBefore, notAfter, key)
	der, err := ca.sign(tmpl, key.Public())
	if err != nil {
		return Credential{}, err
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return Credential{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certPEM = append(certPEM, ca.chainPEM...)
	return Credential{
		Serial:    FormatSerial(serial),
		NotBefore: tmpl.NotBefore.UTC(),
		NotAfter:  tmpl.NotAfter.UTC(),
		CertPEM:   certPEM,
		KeyPEM:    keyPEM,
	}, nil
}

// marshalKey encodes an instance key the way Diego's credmanager does:
// PKCS#1 "RSA PRIVATE KEY" for RSA (x509.MarshalPKCS1PrivateKey), and for
// ECDSA, which Diego never issues, the matching traditional form, SEC1 "EC
// PRIVATE KEY". Libraries written against Diego cells (the Java buildpack's
// security provider) read these and reject PKCS#8 "PRIVATE KEY".
func marshalKey(key crypto.Signer) ([]byte, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), nil
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, fmt.Errorf("marshal key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
	}
	return nil, fmt.Errorf("marshal key: unsupported key type %T", key)
}

func validDNSName(n string) bool {
	if n == "" || len(n) > 253 || n[0] == '.' || n[len(n)-1] == '.' {
		return false
	}
	for _, c := range []byte(n) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
