package credmanager

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3"
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
//  3. replace instance.key, then instance.crt, by rename(2) of a new regular
//     file (what file watchers and Diego-era readers see; renamedFiles);
//  4. make sure each other visible name (the bundle) is a relative symlink
//     to ..data/<name>;
//  5. remove every older generation.
//
// Before step 2 a failure leaves the current generation as it was. Files are
// owned by uid:gid with the given modes; directories by the caller (the
// agent), mode 0755 so that uid can traverse them.
//
// Nothing is fsynced. The rename is what makes a generation atomic for
// readers, and it is atomic without a sync; a sync only adds durability
// across a machine crash, and a machine crash ends every container, whose
// credentials are then removed by recovery. The fsyncs were ~25% of the
// agent's CPU per rotation (BENCHMARKS.md, rotation profile).
func publish(logger lager.Logger, dir string, now time.Time, uid, gid int, files []genFile) (retErr error) {
	if err := os.MkdirAll(filepath.Dir(filepath.Dir(dir)), 0o700); err != nil {
		return err
	}
	// credentials/ is root's alone: a host account that happens to have a
	// container's uid must not reach that container's key. The container
	// reaches its own directory through the bind mount, which does not
	// need the parents traversable.
	if err := ensureDir(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	if err := ensureDir(dir, 0o755); err != nil {
		return err
	}

	gen, err := os.MkdirTemp(dir, now.UTC().Format(genTimeLayout))
	if err != nil {
		return fmt.Errorf("create generation dir: %w", err)
	}
	published := false
	defer func() {
		if !published {
			_ = os.RemoveAll(gen)
		}
	}()
	if err := os.Chmod(gen, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		if err := writeOwnedFile(filepath.Join(gen, f.name), f.data, f.mode, uid, gid, false); err != nil {
			return err
		}
	}

	prev, _ := os.Readlink(filepath.Join(dir, DataDir))
	if err := swapSymlink(dir, DataDir, filepath.Base(gen)); err != nil {
		return err
	}
	published = true

	for _, name := range renamedFiles {
		i := slices.IndexFunc(files, func(f genFile) bool { return f.name == name })
		if i < 0 {
			continue
		}
		if err := replaceFile(dir, files[i], uid, gid); err != nil {
			return err
		}
	}
	for _, name := range visibleFiles {
		want := filepath.Join(DataDir, name)
		if got, err := os.Readlink(filepath.Join(dir, name)); err == nil && got == want {
			continue
		}
		if err := swapSymlink(dir, name, want); err != nil {
			return err
		}
	}

	// Older generations are garbage now. The one just replaced is kept
	// until the next rotation: a reader that resolved ..data to it a moment
	// ago still finds it (removing it at once gave such readers ENOENT).
	if err := removeGenerations(dir, filepath.Base(gen), prev); err != nil {
		logger.Error("remove-old-generations-failed", err, lager.Data{"dir": dir})
	}
	return nil
}

// replaceFile atomically replaces dir/f.name (a file, or the symlink an
// older agent made) with a regular file holding f.data.
func replaceFile(dir string, f genFile, uid, gid int) error {
	tmp := filepath.Join(dir, f.name+tmpSuffix)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := writeOwnedFile(tmp, f.data, f.mode, uid, gid, false); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
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

// writeOwnedFile creates path owned by uid:gid with mode; durable syncs it
// to disk before returning.
func writeOwnedFile(path string, data []byte, mode os.FileMode, uid, gid int, durable bool) (retErr error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err := f.Close(); err != nil && retErr == nil {
			retErr = err
		}
	}()
	// Owner and mode are set before the data goes in: the key is never
	// readable by anybody else, not even for a moment.
	if err := f.Chown(uid, gid); err != nil {
		return fmt.Errorf("chown %s to %d:%d: %w", path, uid, gid, err)
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return f.Sync()
}

// swapSymlink atomically makes dir/name a symlink to target.
func swapSymlink(dir, name, target string) error {
	tmp := filepath.Join(dir, name+tmpSuffix)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// removeGenerations removes every generation directory of dir except keep.
func removeGenerations(dir string, keep ...string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), genPrefix) || slices.Contains(keep, e.Name()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// writeFileAtomic replaces path with data (temp file, fsync, rename, fsync
// of the directory): for files that must survive a machine crash (the dev
// CA).
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + tmpSuffix
	_ = os.Remove(tmp)
	if err := writeOwnedFile(tmp, data, mode, os.Getuid(), os.Getgid(), true); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
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
