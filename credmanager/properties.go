package credmanager

import (
	"errors"
	"fmt"
	"regexp"
	"unicode"
	"unicode/utf8"
)

var (
	// ErrInvalidCertificateProperties wraps every problem found by
	// ValidateCertificateProperties; the agent answers it with InvalidRequest.
	ErrInvalidCertificateProperties = errors.New("invalid certificate_properties")
	// ErrInvalidGUID: the guid would not be a safe directory name.
	ErrInvalidGUID = errors.New("invalid guid")
	// ErrTracked: Issue was called for an instance whose rotation is running.
	ErrTracked = errors.New("instance credentials are being rotated")
)

const (
	// MaxOrganizationalUnits is the most OU values one certificate carries.
	MaxOrganizationalUnits = 16
	// MaxOrganizationalUnitLen is the upper bound of X.520 ub-organizational-unit-name.
	MaxOrganizationalUnitLen = 64
)

var guidPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

// ValidateGUID accepts [A-Za-z0-9][A-Za-z0-9_-]{0,127}: a guid names a
// directory, so nothing that could climb out of it ("../etc") passes.
func ValidateGUID(guid string) error {
	if !guidPattern.MatchString(guid) {
		return fmt.Errorf("%w %q: want [A-Za-z0-9][A-Za-z0-9_-]{0,127}", ErrInvalidGUID, guid)
	}
	return nil
}

// ValidateCertificateProperties checks the organizational_unit values of a
// run request. Restricting them to PrintableString's alphabet would refuse
// values such as "team_a" or "a@b", so the rule is looser: at most
// MaxOrganizationalUnits values, each 1 to MaxOrganizationalUnitLen bytes of
// valid UTF-8 with no control character. Go's x509 encodes a value as
// PrintableString when it fits ("organization:o1" does: ':' is in that
// alphabet) and as UTF8String otherwise. Every problem is reported, each
// wrapping ErrInvalidCertificateProperties.
func ValidateCertificateProperties(ous []string) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidCertificateProperties}, args...)...))
	}
	if len(ous) > MaxOrganizationalUnits {
		bad("organizational_unit has %d values, at most %d allowed", len(ous), MaxOrganizationalUnits)
	}
	for i, ou := range ous {
		switch {
		case len(ou) == 0:
			bad("organizational_unit[%d] is empty", i)
		case len(ou) > MaxOrganizationalUnitLen:
			bad("organizational_unit[%d] is %d bytes long, at most %d allowed", i, len(ou), MaxOrganizationalUnitLen)
		case !utf8.ValidString(ou):
			bad("organizational_unit[%d] is not valid UTF-8", i)
		default:
			for _, r := range ou {
				if unicode.IsControl(r) {
					bad("organizational_unit[%d] %q contains control character %U", i, ou, r)
					break
				}
			}
		}
	}
	return errors.Join(errs...)
}
