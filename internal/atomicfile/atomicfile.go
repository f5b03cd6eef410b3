// Package atomicfile replaces a file so that a reader sees the old or the
// new content, never a part, with the durability the caller asks for.
// Every file the agent rewrites in place goes through it, so the choice
// is spelled out once per caller instead of being a property of whichever
// copy of the temp-file-and-rename dance it used.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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
func WriteFile(path string, data []byte, perm fs.FileMode, d Durability) (retErr error) {
	if d > SyncFileAndDir {
		return fmt.Errorf("write %s: unknown %s", path, d)
	}
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if retErr != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d >= SyncFile {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d >= SyncFileAndDir {
		if err := syncDir(dir); err != nil {
			return fmt.Errorf("sync directory of %s: %w", path, err)
		}
	}
	return nil
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
