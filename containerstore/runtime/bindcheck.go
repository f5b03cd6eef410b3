package runtime

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/executor"
)

// labelBindCheck prefixes the labels that carry a checked bind mount:
// "<dev>:<ino>:<container path>".
const labelBindCheck = "cellagent.bind-check."

// bindCheckLabels records the checked identity of each request bind mount.
func bindCheckLabels(mounts []containerstore.Mount, labels map[string]string) {
	n := 0
	for _, m := range mounts {
		if m.Ino == 0 {
			continue
		}
		labels[labelBindCheck+strconv.Itoa(n)] = fmt.Sprintf("%d:%d:%s", m.Dev, m.Ino, m.Destination)
		n++
	}
}

// verifyBindMounts checks, in a created container whose process has not
// started, that each checked bind mount is the directory the allowlist
// check saw: runc resolved the source path again, after the check, and a
// container that can write into an allowlisted directory could have
// swapped a component for a symlink in between. root is the container's
// root as the host sees it (/proc/<pid>/root).
func verifyBindMounts(root string, labels map[string]string) error {
	rootfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(rootfd)
	for k, v := range labels {
		if !strings.HasPrefix(k, labelBindCheck) {
			continue
		}
		f := strings.SplitN(v, ":", 3)
		if len(f) != 3 {
			return fmt.Errorf("label %s: %q is not dev:ino:path", k, v)
		}
		dev, err1 := strconv.ParseUint(f[0], 10, 64)
		ino, err2 := strconv.ParseUint(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("label %s: %q is not dev:ino:path", k, v)
		}
		fd, err := unix.Openat2(rootfd, strings.TrimPrefix(f[2], "/"), &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err != nil {
			return fmt.Errorf("bind mount %s: %w", f[2], err)
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("bind mount %s: %w", f[2], err)
		}
		if st.Dev != dev || st.Ino != ino {
			return executor.NewError(executor.ErrInvalidRequest,
				"bind mount %s is not the directory the allowlist check saw (its host path changed while the container was created)", f[2])
		}
	}
	return nil
}
