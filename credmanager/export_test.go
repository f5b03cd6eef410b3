package credmanager

import (
	"crypto"
	"time"

	"code.cloudfoundry.org/lager/v3"
)

// Test seams. Each must be used before Run or Track, as the rotation
// goroutines read these fields without a lock.

func SetJitter(m *Manager, f func() float64) { m.jitter = f }

func WrapSigner(m *Manager, wrap func(crypto.Signer) crypto.Signer) {
	m.issuer.ca.signer = wrap(m.issuer.ca.signer)
}

// NextRotation is when guid's rotation timer fires (zero until armed).
func NextRotation(m *Manager, guid string) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if in, ok := m.tracked[guid]; ok {
		return in.next
	}
	return time.Time{}
}

func Notify(m *Manager, logger lager.Logger, guid string, cred Credential) error {
	return m.notify(logger, guid, cred)
}

// Renew is one rotation's file work, without handlers.
func Renew(m *Manager, logger lager.Logger, id Identity, rotations int) (Credential, error) {
	return m.renew(logger, id, rotations)
}

// IssueInMemory is issuance (key generation and signing) without files.
func IssueInMemory(m *Manager, id Identity) (Credential, error) {
	return issue(m.issuer.ca, m.issuer.keyType, id, m.clock.Now(), m.issuer.validity)
}

var (
	RotationPoint   = rotationPoint
	NewRetryBackoff = newRetryBackoff
	GenerateKey     = generateKey
)
