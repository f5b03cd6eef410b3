package containerstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
)

// BindMountHook adds a request's bind mounts, only from host paths under
// the allowlist (symlinks resolved, so a link cannot point outside it).
type BindMountHook struct {
	Allowlist []string
}

var (
	_ SetupStep[BindMountsResult] = (*BindMountHook)(nil)
	_ RequestValidator            = (*BindMountHook)(nil)
)

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
	real, _, err := h.resolveIn(m)
	return real, err
}

// resolveIn checks m and answers the real host path and the real
// allowlisted directory it is under.
func (h *BindMountHook) resolveIn(m executor.BindMount) (string, string, error) {
	if !filepath.IsAbs(m.HostPath) || !filepath.IsAbs(m.ContainerPath) {
		return "", "", fmt.Errorf("host_path %q and container_path %q must be absolute", m.HostPath, m.ContainerPath)
	}
	target := filepath.Clean(m.ContainerPath)
	if target == "/" {
		return "", "", fmt.Errorf("container_path / is not allowed")
	}
	if r, ok := executor.ReservedMountPath(target); ok {
		return "", "", fmt.Errorf("container_path %q is reserved (%s)", m.ContainerPath, r)
	}
	real, err := filepath.EvalSymlinks(filepath.Clean(m.HostPath))
	if err != nil {
		return "", "", fmt.Errorf("host_path %q: %v", m.HostPath, err)
	}
	for _, dir := range h.Allowlist {
		realDir, err := filepath.EvalSymlinks(dir)
		if err != nil {
			continue
		}
		if within(real, realDir) {
			return real, realDir, nil
		}
	}
	return "", "", fmt.Errorf("host_path %q (%s) is not under bind_mount_allowlist %v", m.HostPath, real, h.Allowlist)
}

// Setup adds each bind mount with the identity (device, inode) of the
// directory it was checked to be, read from a handle opened beneath the
// allowlisted directory without following any symlink: runc resolves the
// path again when it mounts, and a container that can write into an
// allowlisted directory could swap a component for a symlink in between.
// The runtime refuses to start the process when the mounted directory is
// not that one (Mount.Dev, Mount.Ino).
func (h *BindMountHook) Setup(ctx context.Context, logger lager.Logger, in Instance) (BindMountsResult, error) {
	var res BindMountsResult
	for _, m := range in.Request.BindMounts {
		real, dir, err := h.resolveIn(m)
		if err != nil {
			return BindMountsResult{}, fmt.Errorf("%w: %v", executor.ErrInvalidRequest, err)
		}
		dev, ino, err := identityBeneath(dir, real)
		if err != nil {
			return BindMountsResult{}, fmt.Errorf("%w: host_path %q: %v", executor.ErrInvalidRequest, m.HostPath, err)
		}
		res.Mounts = append(res.Mounts, Mount{Source: real, Destination: filepath.Clean(m.ContainerPath), ReadOnly: m.ReadOnly,
			Dev: dev, Ino: ino})
	}
	return res, nil
}

// identityBeneath answers the device and inode of path (under dir),
// resolving each component beneath dir and following no symlink.
func identityBeneath(dir, path string) (uint64, uint64, error) {
	rel, err := filepath.Rel(dir, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return 0, 0, fmt.Errorf("%s is not under %s", path, dir)
	}
	dirfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return 0, 0, &os.PathError{Op: "open beneath " + dir, Path: rel, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, 0, err
	}
	return st.Dev, st.Ino, nil
}

func (h *BindMountHook) Teardown(context.Context, lager.Logger, string) error { return nil }
