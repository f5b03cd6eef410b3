package runtime

import (
	"context"
	"fmt"
)

// WritableBytes answers the bytes guid's writable layer holds: the
// snapshotter's usage of the container's active snapshot (overlayfs: the
// upper directory's allocated size).
func (c *Client) WritableBytes(ctx context.Context, guid string) (int64, error) {
	u, err := c.client.SnapshotService(c.snapshotter).Usage(c.nsCtx(ctx), snapshotKey(guid))
	if err != nil {
		return 0, fmt.Errorf("disk usage of %s: %w", guid, notFound(guid, err))
	}
	return u.Size, nil
}
