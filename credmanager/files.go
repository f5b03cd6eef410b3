package credmanager

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"golang.org/x/sys/unix"
)

// The files an instance sees in its credential directory.
const (
	// CertFile holds the leaf certificate, then the CA chain (PEM).
	CertFile = "instance.crt"
	// KeyFile holds the leaf's private key, PKCS#1 ("BEGIN RSA PRIVATE KEY")
	// or SEC1 ("BEGIN EC PRIVATE KEY"), as Diego writes it.
	KeyFile = "instance.key"
	// BundleFile holds KeyFile's key followed by CertFile's certificates:
	// one file, so one open(2) always yields a matching pair.
	// tls.X509KeyPair(b, b) accepts its contents as both arguments.
	BundleFile = "instance-bundle.pem"
	// DataDir is the symlink to the current generation; read both files of a
	// pair relative to it resolved once (see ReadPair).
	DataDir = "..data"
	// ContainerPath is where the agent bind-mounts HostDir read-only.
	ContainerPath = "/etc/cf-instance-credentials"
)

const (
	credentialsDir = "credentials"
	metaFile       = "credential.json" // Credential as JSON, for Adopt
	tmpSuffix      = "_tmp"
	genPrefix      = ".."
	genTimeLayout  = "..2006_01_02_15_04_05."
	readAttempts   = 10
)

// visibleFiles are symlinks to DataDir/<name>, created once per directory.
var visibleFiles = []string{BundleFile}

// renamedFiles are regular files replaced by rename(2) on every rotation,
// in this order, as Diego's InstanceIdentityHandler.Update does: a file
// watcher (the Java buildpack's security provider watches the directory for
// these names) sees each one replaced, which a ..data swap never shows it.
// The key goes first because watchers reload on the certificate: once
// instance.crt is replaced, reading instance.key then instance.crt gives the
// new pair.
var renamedFiles = []string{KeyFile, CertFile}

type genFile struct {
	name string
	data []byte
	mode os.FileMode
}

// publish makes files the current generation of dir, the way Kubernetes'
// AtomicWriter fills projected volumes:
//
//  1. write every file into a new directory dir/..<timestamp>.<random>;
//  2. point dir/..data at it with symlink(..data_tmp) + rename(2), the one
//     step that readers of ..data and the bundle observe;
//  3. replace instance.key, then instance.crt, by rename(2) of a hard link
//     to the new generation's file (a new regular file under the name,
//     what file watchers and Diego-era readers see; renamedFiles);
//  4. make sure each other visible name (the bundle) is a relative symlink
//     to ..data/<name>;
//  5. remove every older generation but the one just replaced.
//
// Before step 2 a failure leaves the current generation as it was. Files are
// owned by uid:gid with the given modes; directories by the caller (the
// agent), mode 0755 so that uid can traverse them.
//
// Durability: none of it is synced (atomicfile.NoSync's promise, for a
// directory of files). The renames make every step atomic for readers,
// which is what a rotation needs; a sync adds only survival of a machine
// crash, which ends every container, whose credentials recovery then
// removes. The syncs were ~25% of the agent's CPU per rotation
// (BENCHMARKS.md, rotation profile). Every step works relative to the open
// directory with plain system calls: a rotation makes ~40 of them, where
// os.File's calls (poller registration, temporary-name clean-up, a second
// copy of key and certificate) made ~115.
func publish(logger lager.Logger, dir string, now time.Time, uid, gid int, files []genFile) (retErr error) {
	d, err := openCredentialDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	dfd := int(d.Fd())

	gen, err := makeGeneration(dfd, now)
	if err != nil {
		return fmt.Errorf("create generation dir in %s: %w", dir, err)
	}
	published := false
	defer func() {
		if !published {
			_ = os.RemoveAll(filepath.Join(dir, gen))
		}
	}()
	for _, f := range files {
		if err := writeOwnedAt(dfd, gen+"/"+f.name, f.data, f.mode, uid, gid); err != nil {
			return fmt.Errorf("write %s: %w", filepath.Join(dir, gen, f.name), err)
		}
	}

	prev, _ := readlinkAt(dfd, DataDir)
	if err := swapAt(dfd, DataDir, func(tmp string) error { return unix.Symlinkat(gen, dfd, tmp) }); err != nil {
		return fmt.Errorf("swap %s in %s: %w", DataDir, dir, err)
	}
	published = true

	for _, name := range renamedFiles {
		if !slices.ContainsFunc(files, func(f genFile) bool { return f.name == name }) {
			continue
		}
		link := func(tmp string) error { return unix.Linkat(dfd, gen+"/"+name, dfd, tmp, 0) }
		if err := swapAt(dfd, name, link); err != nil {
			return fmt.Errorf("replace %s in %s: %w", name, dir, err)
		}
	}
	for _, name := range visibleFiles {
		want := DataDir + "/" + name
		if got, err := readlinkAt(dfd, name); err == nil && got == want {
			continue
		}
		if err := swapAt(dfd, name, func(tmp string) error { return unix.Symlinkat(want, dfd, tmp) }); err != nil {
			return fmt.Errorf("link %s in %s: %w", name, dir, err)
		}
	}

	// Older generations are garbage now. The one just replaced is kept
	// until the next rotation: a reader that resolved ..data to it a moment
	// ago still finds it (removing it at once gave such readers ENOENT).
	if err := removeGenerations(d, files, gen, prev); err != nil {
		logger.Error("remove-old-generations-failed", err, lager.Data{"dir": dir})
	}
	return nil
}

// openCredentialDir opens dir (not through a symlink), creating it (0755)
// and its parent credentials/ (0700) when missing, whatever the umask.
func openCredentialDir(dir string) (*os.File, error) {
	open := func() (*os.File, error) {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
		}
		return os.NewFile(uintptr(fd), dir), nil
	}
	d, err := open()
	if errors.Is(err, fs.ErrNotExist) {
		// credentials/ is root's alone: a host account that happens to
		// have a container's uid must not reach that container's key. The
		// container reaches its own directory through the bind mount,
		// which does not need the parents traversable.
		if err := os.MkdirAll(filepath.Dir(filepath.Dir(dir)), 0o700); err != nil {
			return nil, err
		}
		if err := ensureDir(filepath.Dir(dir), 0o700); err != nil {
			return nil, err
		}
		if err := ensureDir(dir, 0o755); err != nil {
			return nil, err
		}
		d, err = open()
	}
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &st); err != nil {
		d.Close()
		return nil, &fs.PathError{Op: "stat", Path: dir, Err: err}
	}
	if st.Mode&0o7777 != 0o755 {
		if err := unix.Fchmod(int(d.Fd()), 0o755); err != nil {
			d.Close()
			return nil, &fs.PathError{Op: "chmod", Path: dir, Err: err}
		}
	}
	return d, nil
}

// makeGeneration creates a new generation directory in dfd, mode 0755
// whatever the umask, named ..<now>.<random> (os.MkdirTemp's way).
func makeGeneration(dfd int, now time.Time) (string, error) {
	prefix := now.UTC().Format(genTimeLayout)
	for range 100 {
		name := prefix + strconv.FormatUint(uint64(rand.Uint32()), 10)
		err := unix.Mkdirat(dfd, name, 0o755)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return "", err
		}
		if err := unix.Fchmodat(dfd, name, 0o755, 0); err != nil {
			_ = unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
			return "", err
		}
		return name, nil
	}
	return "", errors.New("no unused generation name")
}

// swapAt atomically makes dfd/name what create makes at a temporary name
// (a symlink, a hard link): create(tmp), then rename(2) over name. A
// temporary a crash left behind is removed and create tried again.
func swapAt(dfd int, name string, create func(tmp string) error) error {
	tmp := name + tmpSuffix
	err := create(tmp)
	if errors.Is(err, unix.EEXIST) {
		if err := unix.Unlinkat(dfd, tmp, 0); err != nil {
			return fmt.Errorf("remove %s: %w", tmp, err)
		}
		err = create(tmp)
	}
	if err != nil {
		return err
	}
	if err := unix.Renameat(dfd, tmp, dfd, name); err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return err
	}
	return nil
}

func readlinkAt(dfd int, name string) (string, error) {
	buf := make([]byte, 256)
	n, err := unix.Readlinkat(dfd, name, buf)
	if err != nil {
		return "", err
	}
	if n == len(buf) {
		return "", fmt.Errorf("readlink %s: target too long", name)
	}
	return string(buf[:n]), nil
}

// ensureDir makes path a directory with mode, whatever the umask.
func ensureDir(path string, mode os.FileMode) error {
	if err := os.Mkdir(path, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s exists and is not a directory", path)
	}
	if fi.Mode().Perm() != mode {
		return os.Chmod(path, mode)
	}
	return nil
}

// writeOwnedAt creates dfd/name owned by uid:gid with mode and data.
func writeOwnedAt(dfd int, name string, data []byte, mode os.FileMode, uid, gid int) (retErr error) {
	fd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err := unix.Close(fd); err != nil && retErr == nil {
			retErr = err
		}
	}()
	// Owner and mode are set before the data goes in: the key is never
	// readable by anybody else, not even for a moment.
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fmt.Errorf("chown to %d:%d: %w", uid, gid, err)
	}
	if err := unix.Fchmod(fd, uint32(mode.Perm())); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// removeGenerations removes every generation directory of d except keep.
// The files publish writes are removed by name and the directory with
// rmdir(2); anything else in it (left by an older agent) by RemoveAll.
func removeGenerations(d *os.File, files []genFile, keep ...string) error {
	entries, err := d.ReadDir(-1)
	if err != nil {
		return err
	}
	dfd := int(d.Fd())
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), genPrefix) || slices.Contains(keep, e.Name()) {
			continue
		}
		for _, f := range files {
			_ = unix.Unlinkat(dfd, e.Name()+"/"+f.name, 0)
		}
		if err := unix.Unlinkat(dfd, e.Name(), unix.AT_REMOVEDIR); err != nil {
			if err := os.RemoveAll(filepath.Join(d.Name(), e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ReadPair reads CertFile and KeyFile of one generation of the credential
// directory dir (a host dir, or ContainerPath inside a container). It opens
// dir/..data once and reads both names relative to that open directory, so a
// rotation between the two reads cannot mix generations; if the generation
// is removed under it (ENOENT) it starts again from the new ..data.
//
// Opening dir/instance.crt and dir/instance.key separately gives no such
// guarantee: each open resolves ..data anew, and a swap in between yields a
// new certificate with an old key. Readers that cannot do what ReadPair does
// read BundleFile (one open), or check that the certificate's public key
// matches the key and read again when it does not.
func ReadPair(dir string) (certPEM, keyPEM []byte, err error) {
	b, err := readGeneration(dir, CertFile, KeyFile)
	if err != nil {
		return nil, nil, err
	}
	return b[0], b[1], nil
}

func readGeneration(dir string, names ...string) ([][]byte, error) {
	var err error
	for range readAttempts {
		var root *os.Root
		root, err = os.OpenRoot(filepath.Join(dir, DataDir))
		if errors.Is(err, fs.ErrNotExist) {
			// ..data pointed at a generation that was removed while the
			// path was being resolved: resolve again.
			continue
		}
		if err != nil {
			return nil, err
		}
		out := make([][]byte, len(names))
		for i, name := range names {
			if out[i], err = root.ReadFile(name); err != nil {
				break
			}
		}
		root.Close()
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("read %s: generation kept changing: %w", dir, err)
}
