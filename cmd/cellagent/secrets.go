package main

import (
	"fmt"
	"path/filepath"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/internal/secretfs"
)

// secretDirs hold every instance's private key: the credential files the
// containers bind-mount, and the proxies' copies.
var secretDirs = []string{"credentials", "proxy"}

// secretBytesPerSlot bounds each secret tmpfs per container slot. An
// instance uses ~32 KiB in each (one page per file, two generations
// during a rotation); the rest is headroom. tmpfs holds only the pages
// written, so the bound costs nothing until it is used.
const (
	secretBytesPerSlot = 256 << 10
	secretMinBytes     = 16 << 20
)

// mountSecretDirs puts the secret directories on a tmpfs each (identity.tmpfs),
// or, with it off, unmounts the agent's empty ones. A tmpfs that holds a
// container's files is never unmounted: the container bind-mounts them.
func mountSecretDirs(logger lager.Logger, cfg config.Config) error {
	size := max(int64(cfg.Capacity.MaxContainers)*secretBytesPerSlot, secretMinBytes)
	for _, name := range secretDirs {
		dir := filepath.Join(cfg.DataDir, name)
		var st secretfs.State
		var err error
		if cfg.Identity.Tmpfs {
			st, err = secretfs.Ensure(dir, size)
		} else {
			st, err = secretfs.Release(dir)
		}
		if err != nil && cfg.Identity.Tmpfs {
			return fmt.Errorf("identity.tmpfs: %w (identity.tmpfs: false keeps the keys on data_dir's filesystem)", err)
		} else if err != nil {
			return err
		}
		logger.Info("secret-dir", lager.Data{"dir": dir, "tmpfs": st.String(), "size-bytes": size})
	}
	return nil
}
