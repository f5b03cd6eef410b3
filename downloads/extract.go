package downloads

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Owner is who extracted files belong to; nil leaves them to the agent
// (root), as for cached dependencies, which are mounted read-only.
type Owner struct{ UID, GID int }

// Limits bound what one archive may extract to.
type Limits struct {
	// MaxBytes bounds the regular files' total size.
	MaxBytes int64
	// MaxEntries bounds the number of entries.
	MaxEntries int
}

// ErrUnsafeEntry is an archive entry refused: an absolute name, a ".."
// element, a path through a link that leaves the target, a device file.
var ErrUnsafeEntry = errors.New("unsafe archive entry")

// Extract extracts the archive in f, a gzip-compressed tar, a tar or a
// zip (told by its first bytes, as Diego's cacheddownloader does), into
// root and answers the bytes of the regular files written. Every path is
// resolved through root (os.Root): no entry name, symbolic link or hard
// link leads out of it. Setuid, setgid and sticky bits are dropped.
func Extract(f *os.File, root *os.Root, owner *Owner, lim Limits) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	magic := make([]byte, 4)
	n, _ := f.ReadAt(magic, 0)
	x := &extractor{root: root, owner: owner, lim: lim}
	switch {
	case n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		gz, err := gzip.NewReader(io.NewSectionReader(f, 0, st.Size()))
		if err != nil {
			return 0, fmt.Errorf("gzip: %w", err)
		}
		err = x.tar(tar.NewReader(gz))
		return x.written, err
	case n == 4 && (string(magic) == "PK\x03\x04" || string(magic) == "PK\x05\x06"):
		zr, err := zip.NewReader(f, st.Size())
		if err != nil {
			return 0, fmt.Errorf("zip: %w", err)
		}
		err = x.zip(zr)
		return x.written, err
	}
	err = x.tar(tar.NewReader(io.NewSectionReader(f, 0, st.Size())))
	return x.written, err
}

type extractor struct {
	root    *os.Root
	owner   *Owner
	lim     Limits
	written int64
	entries int
}

func (x *extractor) tar(tr *tar.Reader) error {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		var link string
		switch h.Typeflag {
		case tar.TypeXGlobalHeader:
			continue
		case tar.TypeSymlink, tar.TypeLink:
			link = h.Linkname
		}
		if err := x.entry(h.Name, h.FileInfo().Mode(), h.Typeflag == tar.TypeLink, link, tr); err != nil {
			return err
		}
	}
}

func (x *extractor) zip(zr *zip.Reader) error {
	for _, zf := range zr.File {
		mode := zf.Mode()
		rc, err := zf.Open()
		if err != nil {
			return fmt.Errorf("zip %s: %w", zf.Name, err)
		}
		var link string
		if mode&fs.ModeSymlink != 0 {
			b, err := io.ReadAll(io.LimitReader(rc, 4096))
			if err != nil {
				rc.Close()
				return fmt.Errorf("zip %s: %w", zf.Name, err)
			}
			link = string(b)
		}
		err = x.entry(zf.Name, mode, false, link, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// cleanName answers an entry's name relative to the root ("" for the
// root itself), refusing absolute names and ".." elements.
func cleanName(name string) (string, error) {
	if strings.ContainsRune(name, 0) || strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w %q: absolute or NUL", ErrUnsafeEntry, name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w %q: '..'", ErrUnsafeEntry, name)
		}
	}
	if c := path.Clean(name); c != "." {
		return c, nil
	}
	return "", nil
}

// entry writes one entry: a directory, a regular file (content in r), a
// symbolic link (to link) or a hard link (hard: to the entry named link).
func (x *extractor) entry(rawName string, mode fs.FileMode, hard bool, link string, r io.Reader) error {
	if x.entries++; x.lim.MaxEntries > 0 && x.entries > x.lim.MaxEntries {
		return fmt.Errorf("the archive has more than %d entries", x.lim.MaxEntries)
	}
	name, err := cleanName(rawName)
	if err != nil || name == "" {
		return err
	}
	if err := x.mkdirs(path.Dir(name)); err != nil {
		return fmt.Errorf("%w %q: %v", ErrUnsafeEntry, rawName, err)
	}
	perm := mode.Perm()
	switch {
	case hard:
		target, err := cleanName(link)
		if err != nil || target == "" {
			return fmt.Errorf("%w %q: hard link to %q", ErrUnsafeEntry, rawName, link)
		}
		x.removeNonDir(name)
		if err := x.root.Link(target, name); err != nil {
			return fmt.Errorf("%w %q: %v", ErrUnsafeEntry, rawName, err)
		}
		return nil // the target's owner and mode are already set
	case mode&fs.ModeSymlink != 0:
		x.removeNonDir(name)
		if err := x.root.Symlink(link, name); err != nil {
			return fmt.Errorf("%w %q: %v", ErrUnsafeEntry, rawName, err)
		}
		return x.chown(name)
	case mode.IsDir():
		if err := x.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w %q: %v", ErrUnsafeEntry, rawName, err)
		}
	case mode.IsRegular():
		if err := x.file(name, r); err != nil {
			return fmt.Errorf("%q: %w", rawName, err)
		}
	default:
		return fmt.Errorf("%w %q: %s entries are not extracted", ErrUnsafeEntry, rawName, mode.Type())
	}
	if err := x.root.Chmod(name, perm); err != nil {
		return fmt.Errorf("%w %q: %v", ErrUnsafeEntry, rawName, err)
	}
	return x.chown(name)
}

func (x *extractor) file(name string, r io.Reader) error {
	x.removeNonDir(name)
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnsafeEntry, err)
	}
	left := x.lim.MaxBytes - x.written
	n, err := io.Copy(f, io.LimitReader(r, left+1))
	x.written += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > left {
		err = fmt.Errorf("the archive extracts to more than %d bytes", x.lim.MaxBytes)
	}
	return err
}

// removeNonDir clears the way for a new file or link (as tar does); a
// directory stays.
func (x *extractor) removeNonDir(name string) {
	if fi, err := x.root.Lstat(name); err == nil && !fi.IsDir() {
		_ = x.root.Remove(name)
	}
}

// mkdirs makes the missing directories of dir, owned by the owner.
func (x *extractor) mkdirs(dir string) error {
	return MkdirAll(x.root, dir, x.owner)
}

func (x *extractor) chown(name string) error {
	if x.owner == nil {
		return nil
	}
	return x.root.Lchown(name, x.owner.UID, x.owner.GID)
}

// MkdirAll makes dir (relative, clean) and its missing parents in root,
// mode 0755, those it makes owned by owner (nil: left to root).
func MkdirAll(root *os.Root, dir string, owner *Owner) error {
	if dir == "." || dir == "" {
		return nil
	}
	p := ""
	for _, el := range strings.Split(dir, "/") {
		p = path.Join(p, el)
		fi, err := root.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", p)
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := root.Mkdir(p, 0o755); err != nil {
			return err
		}
		if err := root.Chmod(p, 0o755); err != nil { // past the umask
			return err
		}
		if owner != nil {
			if err := root.Lchown(p, owner.UID, owner.GID); err != nil {
				return err
			}
		}
	}
	return nil
}
