package credmanager

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
)

// Issuer is the cell's identity CA and what it signs: instance and
// container-to-container certificates, in memory. It is made before the
// Manager (which writes and rotates what it issues) so that a part the
// Manager tells of rotations, the proxy, can be given the CA and c2c
// issuance in its own constructor. Safe for concurrent use.
type Issuer struct {
	clock clock.Clock
	// caCertFile and caKeyFile are re-read at every issuance when set (an
	// operator's CA), so a replaced CA takes effect without a restart and an
	// unreadable one fails the issuance (retried) instead of going unnoticed.
	caCertFile, caKeyFile string
	caMu                  sync.Mutex // guards ca
	ca                    *authority
	keyType               KeyType
	validity              time.Duration
}

// NewIssuer validates cfg and loads the configured CA (CACertFile,
// CAKeyFile), or the dev CA of cfg.DataDir, creating it the first time.
// KeyType, Validity and Clock are cfg's; the rest of cfg is the Manager's.
func NewIssuer(logger lager.Logger, cfg Config) (*Issuer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	logger = logger.Session("credmanager")

	var ca *authority
	var err error
	if cfg.CACertFile == "" {
		ca, err = loadOrCreateDevCA(logger, cfg.DataDir, cfg.Clock.Now())
	} else {
		ca, err = loadCA(cfg.CACertFile, cfg.CAKeyFile, cfg.Clock.Now())
	}
	if err != nil {
		return nil, err
	}
	if left := ca.notAfter.Sub(cfg.Clock.Now()); left < cfg.Validity {
		logger.Info("ca-expires-before-validity", lager.Data{"ca-not-after": ca.notAfter.UTC(), "validity": cfg.Validity.String()})
	}
	return &Issuer{
		clock:      cfg.Clock,
		caCertFile: cfg.CACertFile,
		caKeyFile:  cfg.CAKeyFile,
		ca:         ca,
		keyType:    cfg.KeyType,
		validity:   cfg.Validity,
	}, nil
}

// CACertPEM is the last certificate of the CA file (the dev CA itself, or
// the top of the configured chain): what routers and verifiers should trust.
func (is *Issuer) CACertPEM() []byte { return slices.Clone(is.authorityNow().rootPEM) }

func (is *Issuer) authorityNow() *authority {
	is.caMu.Lock()
	defer is.caMu.Unlock()
	return is.ca
}

// authority answers the CA to sign with, re-reading an operator's files.
func (is *Issuer) authority() (*authority, error) {
	if is.caCertFile == "" {
		return is.authorityNow(), nil
	}
	ca, err := loadCA(is.caCertFile, is.caKeyFile, is.clock.Now())
	if err != nil {
		return nil, fmt.Errorf("reload identity CA: %w", err)
	}
	is.caMu.Lock()
	is.ca = ca
	is.caMu.Unlock()
	return ca, nil
}

// issue signs a fresh key and certificate for id, issued now, with the CA
// in force (re-read when configured). It touches no file.
func (is *Issuer) issue(id Identity, now time.Time) (Credential, error) {
	ca, err := is.authority()
	if err != nil {
		return Credential{}, err
	}
	return issue(ca, is.keyType, id, now, is.validity)
}

// IssueC2C issues the container-to-container certificate of an instance,
// as Diego's credmanager generateC2cCred does: signed by the identity CA,
// CN and first DNS SAN the guid, then one DNS SAN per internal route
// hostname, the same OUs, no IP SAN. It touches no file and is not tracked:
// the caller (the proxy, which serves it on 61443) issues a new one at each
// rotation of the instance identity.
func (is *Issuer) IssueC2C(guid string, ous []string, hostnames []string) (Credential, error) {
	id := Identity{GUID: guid, OrganizationalUnits: ous, DNSNames: hostnames}
	if err := id.Validate(); err != nil {
		return Credential{}, err
	}
	return is.issue(id, is.clock.Now())
}
