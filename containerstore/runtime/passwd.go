package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/containerstore"
)

// An image's /etc/passwd is read by the agent, as root on the host, to
// resolve the process user. The image is hostile input: the file may be an
// absolute symlink to a host file, a FIFO that blocks open(2) and read(2)
// for ever, or a few GB. So it is opened inside the rootfs (openat2 with
// RESOLVE_IN_ROOT: "/" and ".." stop at the rootfs, an absolute symlink
// resolves inside it), never blocking (O_NONBLOCK), accepted only as a
// regular file of at most maxPasswdBytes, and read within passwdTimeout.
const (
	maxPasswdBytes = 1 << 20
	passwdTimeout  = 5 * time.Second
)

// userInRootfs resolves user in rootfs's /etc/passwd. A rootfs without one
// accepts numeric users only (lookupUser).
func userInRootfs(rootfs, user string) (containerstore.User, error) {
	b, err := readPasswd(rootfs)
	if errors.Is(err, os.ErrNotExist) {
		return lookupUser(nil, user)
	}
	if err != nil {
		return containerstore.User{}, err
	}
	return lookupUser(bytes.NewReader(b), user)
}

// rootfsUser resolves user, with its home, in rootfs's /etc/passwd.
func rootfsUser(rootfs, user string) (containerstore.RootfsUser, error) {
	b, err := readPasswd(rootfs)
	if errors.Is(err, os.ErrNotExist) {
		return lookupEntry(nil, user)
	}
	if err != nil {
		return containerstore.RootfsUser{}, err
	}
	return lookupEntry(bytes.NewReader(b), user)
}

// readPasswd answers the contents of rootfs/etc/passwd, read safely.
func readPasswd(rootfs string) ([]byte, error) {
	f, err := openInRoot(rootfs, "etc/passwd")
	if err != nil {
		return nil, err
	}
	type result struct {
		b   []byte
		err error
	}
	// The read runs in its own goroutine, which ends when the read does
	// and closes the file; the look-up gives up on it after passwdTimeout
	// (a regular file on a FUSE or network filesystem can still hang).
	done := make(chan result, 1)
	go func() {
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxPasswdBytes+1))
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("read /etc/passwd: %w", r.err)
		}
		if len(r.b) > maxPasswdBytes {
			return nil, fmt.Errorf("/etc/passwd is larger than %d bytes", maxPasswdBytes)
		}
		return r.b, nil
	case <-time.After(passwdTimeout):
		return nil, fmt.Errorf("reading /etc/passwd took longer than %s", passwdTimeout)
	}
}

// openInRoot opens name (relative) as a regular file with every path
// component resolved inside root.
func openInRoot(root, name string) (*os.File, error) {
	dirfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOSYS) {
		return openInOSRoot(root, name) // kernel before 5.6
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/" + name, Err: err}
	}
	f := os.NewFile(uintptr(fd), filepath.Join(root, name))
	if err := regularOnly(f, name); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// openInOSRoot is openInRoot without openat2: os.Root refuses any path
// that leaves root (an absolute symlink too) instead of resolving it
// inside. The FIFO is still opened without blocking.
func openInOSRoot(root, name string) (*os.File, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	f, err := r.OpenFile(name, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	if err := regularOnly(f, name); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func regularOnly(f *os.File, name string) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("/%s is not a regular file (%s)", name, fi.Mode().Type())
	}
	return nil
}
