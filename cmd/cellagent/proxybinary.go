package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/execcheck"
)

// proxyBinary is the proxy executable on the host: proxy.binary, else the
// bundled cellproxy next to this binary (bundled).
func proxyBinary(cfg config.Config) (path string, bundled bool, err error) {
	if cfg.Proxy.Binary != "" {
		return cfg.Proxy.Binary, false, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", true, fmt.Errorf("find own executable: %w", err)
	}
	return filepath.Join(filepath.Dir(self), "cellproxy"), true, nil
}

// proxyUsed says whether the agent will run a proxy (wire.go disables it
// in host network mode).
func proxyUsed(cfg config.Config) bool { return cfg.Proxy.Enabled && cfg.Network.Mode != "host" }

// checkProxyBinary checks, at start and in -check-config, that the proxy
// can run inside a container: cellproxy must be a static executable of
// this machine's architecture (the container's rootfs has none of the
// host's libraries); Envoy brings its own libraries, so it need only be
// executable.
func checkProxyBinary(cfg config.Config) error {
	if !proxyUsed(cfg) {
		return nil
	}
	path, bundled, err := proxyBinary(cfg)
	if err != nil {
		return err
	}
	key := "proxy.binary"
	if bundled {
		key = "the bundled cellproxy (proxy.binary unset)"
	}
	switch cfg.Proxy.Kind {
	case "envoy":
		if st, err := os.Stat(path); err == nil && st.IsDir() {
			path = filepath.Join(path, "envoy") // Diego's layout: a directory holding envoy
		}
		if err := execcheck.Executable(path); err != nil {
			return fmt.Errorf("%s %q: %v", key, path, err)
		}
	case "cellproxy":
		if err := execcheck.Static(path); err != nil {
			return fmt.Errorf("%s %q: %v: it runs inside every container, where the host's libraries are not; "+
				"build it static: CGO_ENABLED=0 go build -o bin/ ./cmd/cellproxy (next to cellagent, or set proxy.binary)", key, path, err)
		}
	}
	return nil
}
