package natsauth

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cellagent/cellagent/internal/atomicfile"
)

// EmbeddedAuthFile, in the agent's data dir, holds the embedded NATS
// server's user and password (mode 0600): what the agent uses, and what
// `cellctl routes` reads when run as root on the cell. A router on the same
// machine is given them through the config (nats.embedded_auth).
const EmbeddedAuthFile = "nats-embedded-auth.json"

// EmbeddedAuth is the embedded server's one user.
type EmbeddedAuth struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// EnsureEmbeddedAuth answers the embedded server's credential: the
// configured one when set, else the one already in dataDir's file, else a
// new random one. The answer is (re)written to the file, 0600.
func EnsureEmbeddedAuth(dataDir string, configured EmbeddedAuth) (EmbeddedAuth, error) {
	auth := configured
	if auth.User == "" || auth.Password == "" {
		existing, err := ReadEmbeddedAuth(dataDir)
		switch {
		case err == nil:
			auth = existing
		case errors.Is(err, os.ErrNotExist):
			b := make([]byte, 24)
			if _, err := rand.Read(b); err != nil {
				return EmbeddedAuth{}, err
			}
			auth = EmbeddedAuth{User: "cellagent", Password: hex.EncodeToString(b)}
		default:
			return EmbeddedAuth{}, err
		}
	}
	b, _ := json.Marshal(auth)
	path := filepath.Join(dataDir, EmbeddedAuthFile)
	// A router may be configured with it: it must not change or vanish
	// after a machine crash.
	if err := atomicfile.WriteFile(path, b, 0o600, atomicfile.SyncFileAndDir); err != nil {
		return EmbeddedAuth{}, err
	}
	return auth, nil
}

// ReadEmbeddedAuth reads dataDir's credential file.
func ReadEmbeddedAuth(dataDir string) (EmbeddedAuth, error) {
	path := filepath.Join(dataDir, EmbeddedAuthFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return EmbeddedAuth{}, err
	}
	var a EmbeddedAuth
	if err := json.Unmarshal(b, &a); err != nil || a.User == "" || a.Password == "" {
		return EmbeddedAuth{}, fmt.Errorf("%s: not a user and password (%v)", path, err)
	}
	return a, nil
}
