package proxyhook

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/credmanager"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/proxyconfig"
)

var _ credmanager.Handler = (*Hook)(nil)

// CredentialsRotated rewrites the proxy's SDS file and, while the proxy
// runs, confirms that it serves the new serial (confirm). An error makes
// credmanager retry the rotation.
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
	gen, err := h.sdsWriting(in, guid)
	if err != nil {
		return fmt.Errorf("forget the confirmed serial: %w", err)
	}
	if err := proxyconfig.WriteIssuedCertAndKey(dir, cred.CertPEM, cred.KeyPEM, cred.Serial); err != nil {
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
	by, err := h.confirm(ctx, in, cred.Serial)
	if err != nil {
		h.notify(containerstore.Note{GUID: guid, Type: executor.EventRotationUnconfirmed, Message: err.Error()})
		return fmt.Errorf("rotation not confirmed by the proxy: %w", err)
	}
	// Debug: credmanager's "rotated" is the rotation's line at info (one
	// line per rotation; an unconfirmed one is logged as rotation-failed).
	logger.Debug("rotation-confirmed", lager.Data{guidKey: guid, "serial": cred.Serial, "by": by})
	h.confirmed(logger, in, guid, cred.Serial, gen)
	return nil
}

// confirm waits until in's proxy serves serial on every identity listener
// or ctx ends, and answers how it found out. A cellproxy (Config.AdminReload)
// is asked once to reload (POST /secrets/reload) and answers what it serves;
// again every 250ms while it serves another serial. Envoy, or a cellproxy
// without the endpoint, is checked by verified handshakes on the host TLS
// ports, the first after ConfirmDelay (its file watch or poll).
func (h *Hook) confirm(ctx context.Context, in *instance, serial string) (by string, err error) {
	byAdmin := h.cfg.AdminReload
	if !byAdmin && !h.waitConfirmDelay(ctx) {
		return "handshake", ctx.Err()
	}
	for {
		if byAdmin {
			h.mu.Lock()
			netns, port := in.inst.NetNSPath, in.inst.ProxyAdminPort
			h.mu.Unlock()
			var report secretsReport
			if report, err = reloadSecrets(ctx, netns, port); err == nil {
				err = report.serves(serial)
			}
			if errors.Is(err, errNoReload) {
				byAdmin = false
				if !h.waitConfirmDelay(ctx) {
					return "handshake", err
				}
				continue
			}
			if err == nil {
				return "admin", nil
			}
		} else if _, _, err = (filesHook{h}).verifyOnce(ctx, in); err == nil {
			return "handshake", nil
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-h.cfg.Clock.After(250 * time.Millisecond):
		}
	}
}

// waitConfirmDelay waits ConfirmDelay; false when ctx ended first.
func (h *Hook) waitConfirmDelay(ctx context.Context) bool {
	select {
	case <-h.cfg.Clock.After(h.cfg.ConfirmDelay):
		return true
	case <-ctx.Done():
		return false
	}
}
