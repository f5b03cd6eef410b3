package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
)

// gcRootLabel keeps a snapshot from containerd's garbage collector.
const gcRootLabel = "containerd.io/gc.root"

// preloadedSnapshot answers the committed snapshot holding the rootfs
// directory dir, importing it the first time. The key carries a fingerprint
// of the directory so an updated rootfs gets a new snapshot.
func (c *Client) preloadedSnapshot(ctx context.Context, name, dir string) (string, error) {
	c.preloadMu.Lock()
	defer c.preloadMu.Unlock()
	if key, ok := c.preloaded[name]; ok {
		return key, nil
	}
	fp, err := fingerprint(dir)
	if err != nil {
		return "", fmt.Errorf("read preloaded rootfs %s at %s: %w", name, dir, err)
	}
	key := "cellagent-preloaded-" + name + "-" + fp
	sn := c.client.SnapshotService(c.snapshotter)
	if _, err := sn.Stat(ctx, key); err == nil {
		c.preloaded[name] = key
		return key, nil
	}
	tmp := key + "-import-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	// The import snapshot must survive containerd's garbage collector while
	// the rootfs is copied in: it has no lease and no container refers to it.
	mounts, err := sn.Prepare(ctx, tmp, "", snapshots.WithLabels(map[string]string{
		gcRootLabel: time.Now().UTC().Format(time.RFC3339), labelOwner: c.cellID}))
	if err != nil {
		return "", fmt.Errorf("prepare import snapshot: %w", err)
	}
	if err := mount.WithTempMount(ctx, mounts, func(root string) error { return copyTree(dir, root) }); err != nil {
		_ = sn.Remove(ctx, tmp)
		return "", fmt.Errorf("copy preloaded rootfs %s: %w", name, err)
	}
	labels := map[string]string{gcRootLabel: time.Now().UTC().Format(time.RFC3339), labelPreloaded: name}
	if err := sn.Commit(ctx, key, tmp, snapshots.WithLabels(labels)); err != nil && !errdefs.IsAlreadyExists(err) {
		_ = sn.Remove(ctx, tmp)
		return "", fmt.Errorf("commit preloaded rootfs %s: %w", name, err)
	}
	c.preloaded[name] = key
	return key, nil
}

// fingerprint hashes names, modes, sizes and times of every entry under dir.
func fingerprint(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %o %d %d\n", p, info.Mode(), info.Size(), info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// copyTree copies dir into root keeping modes, owners and symlinks.
// Device nodes and sockets are skipped: runc provides /dev.
func copyTree(dir, root string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(root, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, _ := info.Sys().(*syscall.Stat_t)
		switch {
		case d.IsDir():
			if rel != "." {
				if err := os.Mkdir(dst, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
					return err
				}
			}
			if err := os.Chmod(dst, info.Mode().Perm()|info.Mode()&(fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid)); err != nil {
				return err
			}
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, dst); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			if err := copyFile(p, dst, info.Mode()); err != nil {
				return err
			}
		default:
			return nil
		}
		if st != nil {
			return os.Lchown(dst, int(st.Uid), int(st.Gid))
		}
		return nil
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode.Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode.Perm()|mode&(fs.ModeSetuid|fs.ModeSetgid))
}
