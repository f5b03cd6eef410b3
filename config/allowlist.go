package config

import (
	"path/filepath"
	"strings"
)

// containerdDirs are containerd's default root and state directories:
// snapshots (every container's writable layer) and task state.
var containerdDirs = []string{"/var/lib/containerd", "/run/containerd"}

// allowlistErrors refuses bind_mount_allowlist entries that contain the
// agent's data_dir (every instance's key, records and logs), containerd's
// directories or the directory of its socket: mounting any of them would
// hand a tenant the cell.
func (c Config) allowlistErrors() []string {
	protected := map[string]string{"data_dir": c.DataDir, "the containerd socket's directory": filepath.Dir(c.Containerd.Socket)}
	for _, d := range containerdDirs {
		protected["containerd's "+d] = d
	}
	var errs []string
	for _, entry := range c.BindMountAllowlist {
		if !filepath.IsAbs(entry) {
			continue // reported by Validate
		}
		e := filepath.Clean(entry)
		for what, dir := range protected {
			if dir != "" && filepath.IsAbs(dir) && contains(e, filepath.Clean(dir)) {
				errs = append(errs, "bind_mount_allowlist: "+entry+" contains "+what+" ("+dir+")")
			}
		}
	}
	return errs
}

// contains says whether dir is path or above it.
func contains(dir, path string) bool {
	return path == dir || dir == "/" || strings.HasPrefix(path, dir+"/")
}
