package containerstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
)

// BindMountHook adds a request's bind mounts, only from host paths under
// the allowlist (symlinks resolved, so a link cannot point outside it).
//
// runc resolves a mount's source path again when it creates the
// container, so a container that can write into an allowlisted directory
// could swap a component for a symlink between the check and the mount.
// Setup therefore opens each source (O_PATH, beneath the allowlisted
// directory, no symlink followed) and gives runc /proc/<agent>/fd/<fd>:
// the magic link is the directory that was checked, whatever the path
// names later. The handles are kept until Teardown.
type BindMountHook struct {
	Allowlist []string

	mu sync.Mutex // guards handles
	// handles are the opened sources of each instance's mounts.
	handles map[string][]*os.File
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
	for _, r := range reservedTargets {
		if within(target, r) {
			return "", "", fmt.Errorf("container_path %q is reserved (%s)", m.ContainerPath, r)
		}
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

func (h *BindMountHook) Setup(ctx context.Context, logger lager.Logger, inst *Instance) (retErr error) {
	var opened []*os.File
	defer func() {
		if retErr != nil {
			closeAll(opened)
		}
	}()
	for _, m := range inst.Request.BindMounts {
		real, dir, err := h.resolveIn(m)
		if err != nil {
			return fmt.Errorf("%w: %v", executor.ErrInvalidRequest, err)
		}
		f, err := openBeneath(dir, real)
		if err != nil {
			return fmt.Errorf("%w: host_path %q: %v", executor.ErrInvalidRequest, m.HostPath, err)
		}
		opened = append(opened, f)
		inst.Mounts = append(inst.Mounts, Mount{Source: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd()),
			Destination: filepath.Clean(m.ContainerPath), ReadOnly: m.ReadOnly})
	}
	if len(opened) > 0 {
		h.mu.Lock()
		if h.handles == nil {
			h.handles = map[string][]*os.File{}
		}
		closeAll(h.handles[inst.GUID])
		h.handles[inst.GUID] = opened
		h.mu.Unlock()
	}
	return nil
}

func (h *BindMountHook) Teardown(_ context.Context, _ lager.Logger, guid string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	closeAll(h.handles[guid])
	delete(h.handles, guid)
	return nil
}

// openBeneath opens path (under dir) as an O_PATH handle, resolving each
// component beneath dir and following no symlink: a component swapped for
// a link since the check makes it fail instead of leading elsewhere.
func openBeneath(dir, path string) (*os.File, error) {
	rel, err := filepath.Rel(dir, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, fmt.Errorf("%s is not under %s", path, dir)
	}
	dirfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, &os.PathError{Op: "open beneath " + dir, Path: rel, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}
