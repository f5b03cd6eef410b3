package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/executor"
)

var _ containerstore.FileReader = (*Client)(nil)

// ReadFile reads the regular file at path (absolute, already validated
// by the store) from guid's root filesystem: its snapshot is mounted read
// only in a temporary directory and the file is opened through an
// os.Root there, so neither ".." nor a symbolic link (absolute ones
// included) leads out of the container's filesystem.
func (c *Client) ReadFile(ctx context.Context, guid, path string, limit int64) ([]byte, error) {
	ctx = c.nsCtx(ctx)
	mounts, err := c.client.SnapshotService(c.snapshotter).Mounts(ctx, snapshotKey(guid))
	if errdefs.IsNotFound(err) {
		return nil, executor.NewError(executor.ErrContainerNotFound, "container %s has no root filesystem", guid)
	}
	if err != nil {
		return nil, fmt.Errorf("mounts of %s: %w", guid, err)
	}
	var out []byte
	err = mount.WithReadonlyTempMount(ctx, mounts, func(root string) error {
		r, err := os.OpenRoot(root)
		if err != nil {
			return err
		}
		defer r.Close()
		f, err := r.Open(strings.TrimPrefix(path, "/"))
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", path)
		}
		out, err = io.ReadAll(io.LimitReader(f, limit+1))
		return err
	})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, executor.NewError(executor.ErrInvalidRequest, "%s: no such file in container %s", path, guid)
	case err != nil:
		return nil, fmt.Errorf("read %s of %s: %w", path, guid, err)
	case int64(len(out)) > limit:
		return nil, executor.NewError(executor.ErrInvalidRequest, "%s of %s is larger than %d bytes", path, guid, limit)
	}
	return out, nil
}

var _ containerstore.RootfsWriter = (*Client)(nil)

// WriteRootfs mounts guid's prepared rootfs snapshot read-write in a
// temporary directory and gives it to fn as an os.Root, with a look-up of
// the users in its /etc/passwd (read as userInRootfs reads it). Writes go
// to the container's writable layer (the overlay's upper directory), the
// one the disk_mb check measures. It must run before the container's task
// starts: the snapshot is then mounted nowhere else.
func (c *Client) WriteRootfs(ctx context.Context, guid string, fn func(root *os.Root, users containerstore.UserLookup) error) error {
	ctx = c.nsCtx(ctx)
	mounts, err := c.client.SnapshotService(c.snapshotter).Mounts(ctx, snapshotKey(guid))
	if errdefs.IsNotFound(err) {
		return executor.NewError(executor.ErrContainerNotFound, "container %s has no root filesystem", guid)
	}
	if err != nil {
		return fmt.Errorf("mounts of %s: %w", guid, err)
	}
	return mount.WithTempMount(ctx, mounts, func(dir string) error {
		r, err := os.OpenRoot(dir)
		if err != nil {
			return err
		}
		defer r.Close()
		return fn(r, func(name string) (containerstore.RootfsUser, error) { return rootfsUser(dir, name) })
	})
}
