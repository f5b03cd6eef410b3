package downloads

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync/atomic"
	"syscall"
)

// Owner is who extracted files belong to; nil leaves them to the agent
// (root), as for cached dependencies, which are mounted read-only.
type Owner struct{ UID, GID int }

// Limits bound what one archive may extract to.
type Limits struct {
	// MaxBytes bounds the regular files' total size.
	MaxBytes int64
	// MaxEntries bounds the number of entries (every tar header the
	// reader answers, global PAX headers too).
	MaxEntries int
	// Shared, if set, is a bound several extractions draw on together (a
	// setup's downloads, parallel ones too, share the container's disk_mb).
	Shared *Budget
}

// Budget is a number of bytes several extractions share.
type Budget struct {
	max  int64
	left atomic.Int64
}

// NewBudget answers a budget of max bytes.
func NewBudget(max int64) *Budget {
	b := &Budget{max: max}
	b.left.Store(max)
	return b
}

// take draws n bytes, or fails and draws nothing when fewer are left.
func (b *Budget) take(n int64) error {
	if b.left.Add(-n) < 0 {
		b.left.Add(n)
		return fmt.Errorf("the downloads extract to more than %d bytes", b.max)
	}
	return nil
}

// budgetWriter draws every write from a shared budget.
type budgetWriter struct {
	w io.Writer
	b *Budget
}

func (bw budgetWriter) Write(p []byte) (int, error) {
	if err := bw.b.take(int64(len(p))); err != nil {
		return 0, err
	}
	n, err := bw.w.Write(p)
	if n < len(p) {
		bw.b.left.Add(int64(len(p) - n))
	}
	return n, err
}

// Overhead a tar stream may have beyond its files' bytes: per entry (a
// header, its padding, PAX records for a long name), plus once (one large
// PAX header). Past MaxBytes plus that, the decompressed stream is cut
// short: a run of headers that extract nothing (Go's tar reader reads
// consecutive PAX and GNU long-name headers in one Next) stays bounded.
const (
	streamPerEntry = 4 << 10
	streamSlack    = 1 << 20
)

// ErrUnsafeEntry is an archive entry refused: an absolute name, a ".."
// element, a path through a link that leaves the target, a device file.
var ErrUnsafeEntry = errors.New("unsafe archive entry")

// Extract extracts the archive in f, a gzip-compressed tar, a tar or a
// zip (told by its first bytes, as Diego's cacheddownloader does), into
// root and answers the bytes of the regular files written. Every path is
// resolved through root (os.Root): no entry name, symbolic link or hard
// link leads out of it. Setuid, setgid and sticky bits are dropped. It
// stops, with ctx's cause, when ctx ends.
func Extract(ctx context.Context, f *os.File, root *os.Root, owner *Owner, lim Limits) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	magic := make([]byte, 4)
	n, _ := f.ReadAt(magic, 0)
	x := &extractor{ctx: ctx, root: root, owner: owner, lim: lim}
	switch {
	case n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		gz, err := gzip.NewReader(io.NewSectionReader(f, 0, st.Size()))
		if err != nil {
			return 0, fmt.Errorf("gzip: %w", err)
		}
		err = x.tar(tar.NewReader(&streamReader{r: gz, x: x}))
		return x.written, err
	case n == 4 && (string(magic) == "PK\x03\x04" || string(magic) == "PK\x05\x06"):
		if err := checkZipEntries(f, st.Size(), lim.MaxEntries); err != nil {
			return 0, err
		}
		zr, err := zip.NewReader(f, st.Size())
		if err != nil {
			return 0, fmt.Errorf("zip: %w", err)
		}
		err = x.zip(zr)
		return x.written, err
	}
	err = x.tar(tar.NewReader(&streamReader{r: io.NewSectionReader(f, 0, st.Size()), x: x}))
	return x.written, err
}

type extractor struct {
	ctx     context.Context
	root    *os.Root
	owner   *Owner
	lim     Limits
	written int64
	entries int
	read    int64 // bytes of the (decompressed) tar stream read
}

// streamReader counts the tar stream and cuts it at the bound above; it
// also stops with the extraction's context.
type streamReader struct {
	r io.Reader
	x *extractor
}

func (s *streamReader) Read(b []byte) (int, error) {
	x := s.x
	if err := x.ctx.Err(); err != nil {
		return 0, context.Cause(x.ctx)
	}
	max := x.lim.MaxBytes + int64(x.entries)*streamPerEntry + streamSlack
	if x.read >= max {
		return 0, fmt.Errorf("the archive's stream is longer than %d bytes", max)
	}
	if left := max - x.read; int64(len(b)) > left {
		b = b[:left]
	}
	n, err := s.r.Read(b)
	x.read += int64(n)
	return n, err
}

// kind is what an entry makes.
type kind uint8

const (
	kindOther kind = iota
	kindDir
	kindFile
	kindSymlink
	kindHardLink
)

// tarKind tells an entry's kind by its type flag alone: mode bits that
// say otherwise are ignored (a regular file with directory bits is a
// file, its data written and counted).
func tarKind(flag byte) kind {
	switch flag {
	case tar.TypeReg, tar.TypeGNUSparse: // the reader fills a sparse file's holes
		return kindFile
	case tar.TypeDir:
		return kindDir
	case tar.TypeSymlink:
		return kindSymlink
	case tar.TypeLink:
		return kindHardLink
	}
	return kindOther
}

func (x *extractor) tar(tr *tar.Reader) error {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if c := context.Cause(x.ctx); c != nil {
				return c
			}
			return fmt.Errorf("tar: %w", err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			if err := x.count(); err != nil {
				return err
			}
			continue
		}
		k := tarKind(h.Typeflag)
		what := fmt.Sprintf("type %q", h.Typeflag)
		if err := x.entry(h.Name, k, what, fs.FileMode(h.Mode).Perm(), h.Linkname, tr); err != nil {
			return err
		}
	}
}

func (x *extractor) zip(zr *zip.Reader) error {
	for _, zf := range zr.File {
		mode := zf.Mode()
		k := kindOther
		switch {
		case mode.IsDir():
			k = kindDir
		case mode&fs.ModeSymlink != 0:
			k = kindSymlink
		case mode.IsRegular():
			k = kindFile
		}
		rc, err := zf.Open()
		if err != nil {
			return fmt.Errorf("zip %s: %w", zf.Name, err)
		}
		var link string
		if k == kindSymlink {
			b, err := io.ReadAll(io.LimitReader(rc, 4096))
			if err != nil {
				rc.Close()
				return fmt.Errorf("zip %s: %w", zf.Name, err)
			}
			link = string(b)
		}
		err = x.entry(zf.Name, k, mode.Type().String(), mode.Perm(), link, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// checkZipEntries reads the entry count of f's end of central directory
// record (zip64's when it says so) and refuses more than max before
// zip.NewReader reads, and allocates for, the whole directory.
func checkZipEntries(f io.ReaderAt, size int64, max int) error {
	if max <= 0 {
		return nil
	}
	const eocdLen, maxComment = 22, 65535
	tail := int64(eocdLen + maxComment)
	if tail > size {
		tail = size
	}
	buf := make([]byte, tail)
	if _, err := f.ReadAt(buf, size-tail); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("zip: %w", err)
	}
	i := bytes.LastIndex(buf, []byte("PK\x05\x06"))
	if i < 0 || len(buf)-i < eocdLen {
		return errors.New("zip: no end of central directory record")
	}
	count := uint64(binary.LittleEndian.Uint16(buf[i+10:]))
	if count == 0xffff && i >= 20 && string(buf[i-20:i-16]) == "PK\x06\x07" {
		// zip64: the locator names the zip64 end record, which has the count.
		off := int64(binary.LittleEndian.Uint64(buf[i-20+8:]))
		rec := make([]byte, 40)
		if _, err := f.ReadAt(rec, off); err != nil || string(rec[:4]) != "PK\x06\x06" {
			return errors.New("zip: bad zip64 end of central directory record")
		}
		count = binary.LittleEndian.Uint64(rec[32:])
	}
	if count > uint64(max) {
		return fmt.Errorf("the zip's directory lists %d entries, more than %d", count, max)
	}
	return nil
}

// count counts one more entry against MaxEntries, and stops when the
// extraction's context has ended.
func (x *extractor) count() error {
	if err := x.ctx.Err(); err != nil {
		return context.Cause(x.ctx)
	}
	if x.entries++; x.lim.MaxEntries > 0 && x.entries > x.lim.MaxEntries {
		return fmt.Errorf("the archive has more than %d entries", x.lim.MaxEntries)
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

// entry writes one entry of kind k: a directory, a regular file (content
// in r), a symbolic link (to link) or a hard link (to the entry named
// link); what describes another kind in its refusal.
func (x *extractor) entry(rawName string, k kind, what string, perm fs.FileMode, link string, r io.Reader) error {
	if err := x.count(); err != nil {
		return err
	}
	name, err := cleanName(rawName)
	if err != nil || name == "" {
		return err
	}
	if err := x.mkdirs(path.Dir(name)); err != nil {
		return fmt.Errorf("%w %q: %v", ErrUnsafeEntry, rawName, err)
	}
	if err := x.owned(name); err != nil {
		return fmt.Errorf("%w %q: %v", ErrUnsafeEntry, rawName, err)
	}
	switch k {
	case kindHardLink:
		target, err := cleanName(link)
		if err != nil || target == "" {
			return fmt.Errorf("%w %q: hard link to %q", ErrUnsafeEntry, rawName, link)
		}
		if err := x.owned(target); err != nil {
			return fmt.Errorf("%w %q: hard link to %q: %v", ErrUnsafeEntry, rawName, link, err)
		}
		x.removeNonDir(name)
		if err := x.root.Link(target, name); err != nil {
			return fmt.Errorf("%w %q: %v", ErrUnsafeEntry, rawName, err)
		}
		return nil // the target's owner and mode are already set
	case kindSymlink:
		x.removeNonDir(name)
		if err := x.root.Symlink(link, name); err != nil {
			return fmt.Errorf("%w %q: %v", ErrUnsafeEntry, rawName, err)
		}
		return x.chown(name)
	case kindDir:
		if err := x.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w %q: %v", ErrUnsafeEntry, rawName, err)
		}
	case kindFile:
		if err := x.file(name, r); err != nil {
			return fmt.Errorf("%q: %w", rawName, err)
		}
	default:
		return fmt.Errorf("%w %q: %s entries are not extracted", ErrUnsafeEntry, rawName, what)
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
	if x.owner != nil { // at once: a file cut short is the owner's too
		if err := f.Chown(x.owner.UID, x.owner.GID); err != nil {
			f.Close()
			return err
		}
	}
	left := x.lim.MaxBytes - x.written
	var w io.Writer = f
	if x.lim.Shared != nil {
		w = budgetWriter{f, x.lim.Shared}
	}
	n, err := io.Copy(w, io.LimitReader(ctxReader{x.ctx, r}, left+1))
	x.written += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > left {
		err = fmt.Errorf("the archive extracts to more than %d bytes", x.lim.MaxBytes)
	}
	return err
}

// ctxReader stops reading, with its context's cause, once it has ended.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(b []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(b)
}

// owned refuses, when the files go to an owner, an existing name that is
// not the owner's: an archive extracted as the user (Diego's StreamIn)
// could neither replace nor re-own it, nor hard-link to it.
func (x *extractor) owned(name string) error {
	if x.owner == nil {
		return nil
	}
	fi, err := x.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != x.owner.UID {
		return fmt.Errorf("%s exists and belongs to uid %d, not %d", name, st.Uid, x.owner.UID)
	}
	return nil
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
