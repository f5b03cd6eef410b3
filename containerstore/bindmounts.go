package containerstore

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
)

// BindMountHook adds a request's bind mounts, only from host paths under
// the allowlist (symlinks resolved, so a link cannot point outside it).
type BindMountHook struct {
	Allowlist []string
}

var (
	_ SetupHook        = (*BindMountHook)(nil)
	_ RequestValidator = (*BindMountHook)(nil)
)

// reservedTargets are container paths the agent mounts itself or the
// kernel owns.
var reservedTargets = []string{"/proc", "/sys", "/dev", "/etc/cf-instance-credentials", "/etc/cf-assets"}

func (h *BindMountHook) Name() string { return "bind-mounts" }

func (h *BindMountHook) ValidateRequest(req *executor.RunRequest) error {
	if len(req.BindMounts) > 16 {
		return executor.NewError(executor.ErrInvalidRequest, "at most 16 bind_mounts")
	}
	for _, m := range req.BindMounts {
		if _, err := h.resolve(m); err != nil {
			return executor.NewError(executor.ErrInvalidRequest, "bind_mounts: %v", err)
		}
	}
	return nil
}

func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// resolve checks m and answers the real host path.
func (h *BindMountHook) resolve(m executor.BindMount) (string, error) {
	if !filepath.IsAbs(m.HostPath) || !filepath.IsAbs(m.ContainerPath) {
		return "", fmt.Errorf("host_path %q and container_path %q must be absolute", m.HostPath, m.ContainerPath)
	}
	target := filepath.Clean(m.ContainerPath)
	if target == "/" {
		return "", fmt.Errorf("container_path / is not allowed")
	}
	for _, r := range reservedTargets {
		if within(target, r) {
			return "", fmt.Errorf("container_path %q is reserved (%s)", m.ContainerPath, r)
		}
	}
	real, err := filepath.EvalSymlinks(filepath.Clean(m.HostPath))
	if err != nil {
		return "", fmt.Errorf("host_path %q: %v", m.HostPath, err)
	}
	for _, dir := range h.Allowlist {
		realDir, err := filepath.EvalSymlinks(dir)
		if err != nil {
			continue
		}
		if within(real, realDir) {
			return real, nil
		}
	}
	return "", fmt.Errorf("host_path %q (%s) is not under bind_mount_allowlist %v", m.HostPath, real, h.Allowlist)
}

func (h *BindMountHook) Setup(ctx context.Context, logger lager.Logger, inst *Instance) error {
	for _, m := range inst.Request.BindMounts {
		real, err := h.resolve(m)
		if err != nil {
			return fmt.Errorf("%w: %v", executor.ErrInvalidRequest, err)
		}
		inst.Mounts = append(inst.Mounts, Mount{Source: real, Destination: filepath.Clean(m.ContainerPath), ReadOnly: m.ReadOnly})
	}
	return nil
}

func (h *BindMountHook) Teardown(context.Context, lager.Logger, string) error { return nil }
