package proxyhook

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/credmanager"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/proxyconfig"
)

var _ credmanager.Handler = (*Hook)(nil)

// CredentialsRotated rewrites the proxy's SDS file and, while the proxy
// runs, confirms by a handshake that it serves the new serial. An error
// makes credmanager retry the rotation.
func (h *Hook) CredentialsRotated(logger lager.Logger, guid string, cred credmanager.Credential) error {
	h.mu.Lock()
	in, ok := h.instances[guid]
	h.mu.Unlock()
	dir := h.dir(guid)
	if !ok {
		if _, err := os.Stat(filepath.Join(dir, proxyconfig.BootstrapFile)); err == nil {
			// Files but no instance: an agent restart is restoring it
			// (credentials are restored before the proxy). Counting
			// this as delivered would leave the proxy on the old
			// certificate until the next rotation; credmanager retries.
			return fmt.Errorf("proxy of %s is not restored yet", guid)
		}
		return nil // no proxy (yet): its files are written at setup
	}
	if _, err := os.Stat(filepath.Join(dir, proxyconfig.BootstrapFile)); err != nil {
		return nil
	}
	h.mu.Lock()
	stopping := in.stopping
	h.mu.Unlock()
	if stopping {
		return nil // draining: the proxy keeps refusing new handshakes
	}
	if err := proxyconfig.WriteCertAndKey(dir, cred.CertPEM, cred.KeyPEM, cred.Serial); err != nil {
		return fmt.Errorf("write proxy certificate: %w", err)
	}
	// The c2c certificate is renewed with the identity, as Diego's
	// credmanager regenerates both on its timer.
	if _, err := os.Stat(filepath.Join(dir, proxyconfig.C2CCertAndKeyFile)); err == nil && h.cfg.IssueC2C != nil {
		if err := h.writeC2C(in.inst); err != nil {
			return fmt.Errorf("renew c2c certificate: %w", err)
		}
	}
	h.mu.Lock()
	in.serial = cred.Serial
	running := in.sup != nil
	h.mu.Unlock()
	if !running {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.ConfirmTimeout)
	defer cancel()
	f := filesHook{h}
	var err error
	select {
	case <-h.cfg.Clock.After(h.cfg.ConfirmDelay):
	case <-ctx.Done():
	}
	for {
		if err = f.verifyOnce(ctx, in); err == nil {
			logger.Info("rotation-confirmed", lager.Data{guidKey: guid, "serial": cred.Serial})
			return nil
		}
		select {
		case <-ctx.Done():
			if sink := h.getSink(); sink != nil {
				sink.Publish(executor.EventRotationUnconfirmed, guid, err.Error())
			}
			return fmt.Errorf("rotation not confirmed by the proxy: %w", err)
		case <-h.cfg.Clock.After(250 * time.Millisecond):
		}
	}
}
