package credmanager

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
)

const guidKey = "container-guid"

// Handler is told about every successful rotation, after the new files are
// in place. The proxy-config handler rewrites the proxy's SDS file from
// cred.CertPEM/KeyPEM; the container store updates the container and emits
// an event. An error makes the rotation count as failed: it is retried with
// backoff (a new certificate each time) and, while it keeps failing, the
// expiry deadline stays that of the last certificate every handler took.
// A handler must not call Untrack or Remove for guid (they wait for it).
type Handler interface {
	CredentialsRotated(logger lager.Logger, guid string, cred Credential) error
}

// ExpiryHandler is told when an instance's certificate expired because every
// rotation attempt until then failed; err is the last attempt's error. The
// instance is no longer tracked by then, so the handler may call Remove.
type ExpiryHandler interface {
	CredentialsExpired(logger lager.Logger, guid string, cred Credential, err error)
}

// Manager issues instance certificates, writes them into per-instance host
// directories and rotates those it tracks. See the package doc.
type Manager struct {
	logger  lager.Logger
	clock   clock.Clock
	issuer  *Issuer // the CA and what it signs
	credDir string
	jitter  func() float64 // uniform in [0,1); fixed in tests

	// Set by New from its Config, never changed.
	handlers       []Handler
	failHandlers   []FailureHandler
	expiryHandlers []ExpiryHandler
	observeRotate  func(time.Duration)

	mu      sync.Mutex
	tracked map[string]*instance // guarded by mu
	running bool                 // guarded by mu: Run has started and not yet stopped
	ran     bool                 // guarded by mu: Run was called
	loops   sync.WaitGroup       // rotation goroutines; Add only while running
}

// New validates cfg and returns a Manager that issues with cfg.Issuer, or
// with an Issuer of its own made from cfg (NewIssuer) when that is nil.
// Nothing rotates until Run.
func New(logger lager.Logger, cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	issuer := cfg.Issuer
	if issuer != nil && (cfg.CACertFile != "" || cfg.CAKeyFile != "" || cfg.KeyType != "" || cfg.Validity != 0) {
		return nil, errors.New("credmanager: the CA files, key type and validity are the Issuer's (NewIssuer), not set again beside it")
	}
	if issuer == nil {
		var err error
		if issuer, err = NewIssuer(logger, cfg); err != nil {
			return nil, err
		}
	}
	cfg = cfg.withDefaults()
	return &Manager{
		logger:  logger.Session("credmanager"),
		clock:   cfg.Clock,
		issuer:  issuer,
		credDir: filepath.Join(cfg.DataDir, credentialsDir),
		jitter:  rand.Float64,
		tracked: map[string]*instance{},

		handlers:       slices.Clone(cfg.Handlers),
		failHandlers:   slices.Clone(cfg.FailureHandlers),
		expiryHandlers: slices.Clone(cfg.ExpiryHandlers),
		observeRotate:  cfg.ObserveRotation,
	}, nil
}

// CACertPEM is the Issuer's (what routers and verifiers should trust).
func (m *Manager) CACertPEM() []byte { return m.issuer.CACertPEM() }

// FailureHandler is told of every failed rotation attempt and when the
// next one is due (the store puts it on the event stream).
type FailureHandler interface {
	CredentialsRotationFailed(logger lager.Logger, guid string, err error, retryAt time.Time)
}

// HostDir is the credential directory of guid on the host, which the agent
// bind-mounts read-only at ContainerPath.
func (m *Manager) HostDir(guid string) (string, error) {
	if err := ValidateGUID(guid); err != nil {
		return "", err
	}
	return filepath.Join(m.credDir, guid), nil
}

// Issue writes a first certificate and key for id into HostDir(id.GUID),
// creating it (an existing directory gets a new generation, with the
// rotation count back at 0). Handlers are not called: the caller has the
// Credential. It fails with ErrTracked while the guid is tracked.
func (m *Manager) Issue(logger lager.Logger, id Identity) (Credential, error) {
	logger = logger.Session("credmanager.issue", lager.Data{guidKey: id.GUID})
	if err := id.Validate(); err != nil {
		return Credential{}, err
	}
	m.mu.Lock()
	_, tracked := m.tracked[id.GUID]
	m.mu.Unlock()
	if tracked {
		return Credential{}, fmt.Errorf("issue %s: %w", id.GUID, ErrTracked)
	}
	cred, err := m.renew(logger, id, 0)
	if err != nil {
		return Credential{}, fmt.Errorf("issue %s: %w", id.GUID, err)
	}
	logger.Info("issued", lager.Data{"serial": cred.Serial, "not-after": cred.NotAfter})
	return cred, nil
}

// IssueC2C is the Issuer's (Issuer.IssueC2C).
func (m *Manager) IssueC2C(guid string, ous []string, hostnames []string) (Credential, error) {
	return m.issuer.IssueC2C(guid, ous, hostnames)
}

// renew issues a certificate for id and publishes it as the current
// generation of its directory.
func (m *Manager) renew(logger lager.Logger, id Identity, rotations int) (Credential, error) {
	now := m.clock.Now()
	cred, err := m.issuer.issue(id, now)
	if err != nil {
		return Credential{}, err
	}
	cred.Rotations = rotations
	meta, err := json.Marshal(cred)
	if err != nil {
		return Credential{}, err
	}
	bundle := slices.Concat(cred.KeyPEM, cred.CertPEM)
	dir := filepath.Join(m.credDir, id.GUID)
	err = publish(logger, dir, now, id.UID, id.GID, []genFile{
		{name: CertFile, data: cred.CertPEM, mode: 0o644},
		{name: KeyFile, data: cred.KeyPEM, mode: 0o600},
		{name: BundleFile, data: bundle, mode: 0o600},
		{name: metaFile, data: meta, mode: 0o644},
	})
	if err != nil {
		return Credential{}, fmt.Errorf("write %s: %w", dir, err)
	}
	return cred, nil
}

// Adopt is for an agent restart: it reads the current generation of
// id.GUID's directory back, checks it (parsable, key matches, CN = guid) and
// tracks it. The rotation is scheduled from the certificate's own lifetime
// and happens at once when that point has passed, the certificate expired,
// or another CA signed it. On error nothing is tracked; the caller may Issue.
func (m *Manager) Adopt(logger lager.Logger, id Identity) (Credential, error) {
	logger = logger.Session("credmanager.adopt", lager.Data{guidKey: id.GUID})
	if err := id.Validate(); err != nil {
		return Credential{}, err
	}
	dir := filepath.Join(m.credDir, id.GUID)
	b, err := readGeneration(dir, CertFile, KeyFile, metaFile)
	if err != nil {
		return Credential{}, fmt.Errorf("adopt %s: %w", id.GUID, err)
	}
	cert, err := checkPair(b[0], b[1])
	if err != nil {
		return Credential{}, fmt.Errorf("adopt %s: %s: %w", id.GUID, dir, err)
	}
	if cert.Subject.CommonName != id.GUID {
		return Credential{}, fmt.Errorf("adopt %s: %s holds a certificate for %q", id.GUID, dir, cert.Subject.CommonName)
	}
	cred := Credential{
		Serial:    FormatSerial(cert.SerialNumber),
		NotBefore: cert.NotBefore.UTC(),
		NotAfter:  cert.NotAfter.UTC(),
		CertPEM:   b[0],
		KeyPEM:    b[1],
	}
	var meta Credential
	if err := json.Unmarshal(b[2], &meta); err != nil || meta.Serial != cred.Serial {
		logger.Info("rotation-count-unknown", lager.Data{"meta-error": fmt.Sprint(err)})
	} else {
		cred.Rotations = meta.Rotations
	}

	rotateNow := false
	if err := cert.CheckSignatureFrom(m.issuer.authorityNow().cert); err != nil {
		logger.Info("signed-by-another-ca", lager.Data{"issuer": cert.Issuer.String()})
		rotateNow = true
	}
	m.track(id, cred, rotateNow)
	logger.Info("adopted", lager.Data{"serial": cred.Serial, "not-after": cred.NotAfter, "rotations": cred.Rotations})
	return cred, nil
}

// checkPair parses the first certificate of certPEM and checks that keyPEM
// holds its private key.
func checkPair(certPEM, keyPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no certificate", CertFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CertFile, err)
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyFile, err)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s does not match %s", KeyFile, CertFile)
	}
	return cert, nil
}

// Credential is the current credential of a tracked instance.
func (m *Manager) Credential(guid string) (Credential, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if in, ok := m.tracked[guid]; ok {
		return in.cred, true
	}
	return Credential{}, false
}

// Remove stops tracking guid (waiting for a rotation in flight) and removes
// its directory with every generation. A missing directory is no error.
func (m *Manager) Remove(logger lager.Logger, guid string) error {
	dir, err := m.HostDir(guid)
	if err != nil {
		return err
	}
	m.Untrack(guid)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove credentials %s: %w", guid, err)
	}
	logger.Session("credmanager.remove", lager.Data{guidKey: guid}).Debug("removed")
	return nil
}

// RemoveOrphans removes (and untracks) every guid directory for which keep
// returns false (the agent passes "is this a container I adopted"). Entries that are
// not guid directories are left alone and logged.
func (m *Manager) RemoveOrphans(logger lager.Logger, keep func(guid string) bool) error {
	logger = logger.Session("credmanager.remove-orphans")
	entries, err := os.ReadDir(m.credDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("remove orphans: %w", err)
	}
	var errs []error
	for _, e := range entries {
		guid := e.Name()
		if !e.IsDir() || ValidateGUID(guid) != nil {
			logger.Info("ignoring-unexpected-entry", lager.Data{"name": guid})
			continue
		}
		if keep(guid) {
			continue
		}
		if err := m.Remove(logger, guid); err != nil {
			errs = append(errs, err)
			continue
		}
		logger.Info("removed-orphan", lager.Data{guidKey: guid})
	}
	return errors.Join(errs...)
}

// notify calls every handler, in order, whatever the earlier ones returned,
// and joins their errors.
func (m *Manager) notify(logger lager.Logger, guid string, cred Credential) error {
	m.mu.Lock()
	handlers := slices.Clone(m.handlers)
	m.mu.Unlock()
	var errs []error
	for _, h := range handlers {
		if err := h.CredentialsRotated(logger, guid, cred); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
