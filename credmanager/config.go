package credmanager

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/clock"
)

// KeyType names the kind of key generated for each instance certificate.
type KeyType string

const (
	KeyTypeECDSAP256 KeyType = "ecdsa-p256"
	KeyTypeRSA2048   KeyType = "rsa-2048"
	KeyTypeRSA3072   KeyType = "rsa-3072"
)

// KeyTypes lists the accepted key types, the default first.
var KeyTypes = []KeyType{KeyTypeECDSAP256, KeyTypeRSA2048, KeyTypeRSA3072}

const (
	// DefaultKeyType is used when Config.KeyType is empty.
	DefaultKeyType = KeyTypeECDSAP256
	// DefaultValidity is used when Config.Validity is zero.
	DefaultValidity = 24 * time.Hour
	// MinValidity keeps the time between the rotation point (50%-70% of the
	// lifetime) and expiry above a few first retries (1s, 2s, ...). Short
	// lifetimes are for tests and demos (30s shows rotations quickly).
	MinValidity = 10 * time.Second
	// Backdate is how far NotBefore lies before the moment of issue, so that
	// a verifier whose clock is a little behind accepts a fresh certificate.
	Backdate = time.Minute
)

// ValidateKeyType reports whether name is one of KeyTypes ("" is not).
func ValidateKeyType(name KeyType) error {
	for _, k := range KeyTypes {
		if name == k {
			return nil
		}
	}
	return fmt.Errorf("unknown key_type %q (want one of %v)", name, KeyTypes)
}

// Config is what New needs. The JSON configuration of the agent
// ("identity": ca_cert, ca_key, key_type, validity) maps onto it; DataDir is
// the agent's data_dir.
type Config struct {
	// DataDir holds credentials/<guid>/ and, without a configured CA,
	// identity/ with the dev CA.
	DataDir string
	// CACertFile and CAKeyFile name the issuing CA (PEM). Both or neither:
	// with neither a dev CA is created in DataDir/identity.
	CACertFile string
	CAKeyFile  string
	// KeyType of instance keys; "" means DefaultKeyType.
	KeyType KeyType
	// Validity of instance certificates, counted from the moment of issue;
	// 0 means DefaultValidity.
	Validity time.Duration
	// Clock drives issue times and the rotation schedule; nil means the
	// real clock.
	Clock clock.Clock
	// Issuer, when set, is the CA made first by NewIssuer (for parts built
	// before the Manager that need it: the proxy); CACertFile, CAKeyFile,
	// KeyType and Validity are then left empty here. Nil: New makes one.
	Issuer *Issuer
	// Handlers, FailureHandlers and ExpiryHandlers are told of every
	// rotation, failed rotation attempt and expiry, in order. They are
	// fixed at New: a part the Manager tells is made before it.
	Handlers        []Handler
	FailureHandlers []FailureHandler
	ExpiryHandlers  []ExpiryHandler
	// ObserveRotation, when set, is told how long each successful rotation
	// took, from its start to the last handler's answer (the proxy
	// confirming the new serial included). For metrics.
	ObserveRotation func(time.Duration)
}

// Validate reports every problem of c at once. Zero values that have a
// default (KeyType, Validity, Clock) are fine.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is empty"))
	} else if !filepath.IsAbs(c.DataDir) {
		errs = append(errs, fmt.Errorf("data_dir %q is not an absolute path", c.DataDir))
	}
	if (c.CACertFile == "") != (c.CAKeyFile == "") {
		errs = append(errs, fmt.Errorf("identity ca_cert (%q) and ca_key (%q) must be set together", c.CACertFile, c.CAKeyFile))
	}
	if c.KeyType != "" {
		if err := ValidateKeyType(c.KeyType); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Validity != 0 && c.Validity < MinValidity {
		errs = append(errs, fmt.Errorf("identity validity %s is shorter than %s", c.Validity, MinValidity))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.KeyType == "" {
		c.KeyType = DefaultKeyType
	}
	if c.Validity == 0 {
		c.Validity = DefaultValidity
	}
	if c.Clock == nil {
		c.Clock = clock.NewClock()
	}
	return c
}
