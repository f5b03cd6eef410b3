// Package atomicfile replaces a file so that a reader sees the old or the
// new content, never a part, with the durability the caller asks for.
// Every file the agent rewrites in place goes through it, so the choice
// is spelled out once per caller instead of being a property of whichever
// copy of the temp-file-and-rename dance it used.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Durability is what a write that returned survives.
type Durability uint8

const (
	// NoSync survives a crash of the agent (the page cache outlives the
	// process): readers and a restarted agent see the old or the new
	// content. After a machine crash the file may hold the old content
	// or, on a file system that does not order data before the rename,
	// nothing. For files whose use ends with the machine's uptime.
	NoSync Durability = iota
	// SyncFile syncs the data before the rename: after a machine crash
	// the file is the old or the new content, complete, never empty;
	// which of the two is not known (the rename may be lost).
	SyncFile
	// SyncFileAndDir also syncs the directory after the rename: once
	// WriteFile returns, the new content survives a machine crash.
	SyncFileAndDir
)

func (d Durability) String() string {
	switch d {
	case NoSync:
		return "no-sync"
	case SyncFile:
		return "sync-file"
	case SyncFileAndDir:
		return "sync-file-and-dir"
	}
	return fmt.Sprintf("durability(%d)", uint8(d))
}

// WriteFile replaces path with data, mode perm, through a temporary file
// in the same directory (".<name>.tmp-*", removed when the write fails;
// one a crash left behind is never read as the file).
//
// It makes the system calls itself (open, fchmod, write, optionally fsync,
// close, rename): an os.File around the temporary file added five more
// (poller registration and its undoing), about a third of the time of a
// NoSync write on tmpfs, where the agent's per-rotation files live.
func WriteFile(path string, data []byte, perm fs.FileMode, d Durability) (retErr error) {
	if d > SyncFileAndDir {
		return fmt.Errorf("write %s: unknown %s", path, d)
	}
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	fd, tmp, err := createTemp(dir, name)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	closed := false
	defer func() {
		if retErr != nil {
			if !closed {
				_ = syscall.Close(fd)
			}
			_ = syscall.Unlink(tmp)
		}
	}()
	// The mode is set on the descriptor, whatever the umask.
	if err := ignoringEINTR(func() error { return syscall.Fchmod(fd, uint32(perm.Perm())) }); err != nil {
		return fmt.Errorf("write %s: %w", path, &fs.PathError{Op: "chmod", Path: tmp, Err: err})
	}
	for rest := data; len(rest) > 0; {
		n, err := syscall.Write(fd, rest)
		if err == syscall.EINTR {
			continue
		}
		if err == nil && n == 0 {
			err = io.ErrShortWrite // as os.File does; never loop on a write that writes nothing
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", path, &fs.PathError{Op: "write", Path: tmp, Err: err})
		}
		rest = rest[n:]
	}
	if d >= SyncFile {
		if err := ignoringEINTR(func() error { return syscall.Fsync(fd) }); err != nil {
			return fmt.Errorf("sync %s: %w", path, err)
		}
	}
	closed = true
	if err := syscall.Close(fd); err != nil {
		return fmt.Errorf("write %s: %w", path, &fs.PathError{Op: "close", Path: tmp, Err: err})
	}
	if err := syscall.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, &os.LinkError{Op: "rename", Old: tmp, New: path, Err: err})
	}
	if d >= SyncFileAndDir {
		if err := syncDir(dir); err != nil {
			return fmt.Errorf("sync directory of %s: %w", path, err)
		}
	}
	return nil
}

// createTemp creates dir/.<name>.tmp-<random>, mode 0600, write only, as
// os.CreateTemp names them.
func createTemp(dir, name string) (int, string, error) {
	var err error
	for range 100 {
		tmp := filepath.Join(dir, "."+name+".tmp-"+strconv.FormatUint(uint64(rand.Uint32()), 10))
		var fd int
		fd, err = syscall.Open(tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
		if err == nil {
			return fd, tmp, nil
		}
		if err != syscall.EEXIST && err != syscall.EINTR {
			return -1, "", &fs.PathError{Op: "open", Path: tmp, Err: err}
		}
	}
	return -1, "", fmt.Errorf("create a temporary file in %s: %w", dir, err)
}

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); err != syscall.EINTR {
			return err
		}
	}
}

// IsTemp answers whether name is a temporary file WriteFile makes (one a
// crash may leave behind).
func IsTemp(name string) bool {
	base := filepath.Base(name)
	return strings.HasPrefix(base, ".") && strings.Contains(base, ".tmp-")
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
