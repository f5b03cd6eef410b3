package containerstore

import (
	"github.com/cellagent/cellagent/executor"
)

// There are no user namespaces: uid 0 in a container is uid 0 on the host,
// with the container's capabilities (CHOWN, DAC_OVERRIDE, FOWNER, SETUID,
// MKNOD, SYS_CHROOT, ...). An image's /etc/passwd or a request's user must
// not give that by accident, so a process user that resolves to uid 0 or
// gid 0 runs only when the cell allows privileged instances
// (allow_privileged) and the request asks for one (privileged: true).

// checkPrivilegeRequest refuses, before anything is reserved, what can be
// seen in the request alone: privileged without allow_privileged, and the
// user names that are root in every image.
func (s *Store) checkPrivilegeRequest(req *executor.RunRequest, user string) error {
	if req.Privileged && !s.cfg.AllowPrivileged {
		return executor.NewError(executor.ErrInvalidRequest, "privileged instances are not allowed on this cell (config allow_privileged is false)")
	}
	if !req.Privileged && (user == "root" || user == "0") {
		return executor.NewError(executor.ErrInvalidRequest, "process user %q is root: set privileged: true on a cell with allow_privileged, or run as another user", user)
	}
	return nil
}

// checkPrivilege refuses a resolved uid 0 or gid 0 unless the instance is
// privileged. The user is resolved in the image, so this runs after
// Prepare.
func (s *Store) checkPrivilege(req executor.RunRequest, u User) error {
	if u.UID != 0 && u.GID != 0 {
		return nil
	}
	if req.Privileged && s.cfg.AllowPrivileged {
		return nil
	}
	return executor.NewError(executor.ErrInvalidRequest, "process user %q resolves to uid %d gid %d in the image: root on the host (no user namespace); set privileged: true on a cell with allow_privileged, or run as another user",
		req.Process.User, u.UID, u.GID)
}
