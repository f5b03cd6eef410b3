package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"

	"github.com/cellagent/cellagent/executor"
)

// ImportImage reads an image archive (an OCI image layout or `docker save`
// tar) into containerd's content store in the agent's namespace, names it,
// and unpacks it into the snapshotter for this machine's platform, so a
// run request can use it as its image at once. The names come from the
// archive (io.containerd.image.name, or a full reference in
// org.opencontainers.image.ref.name) and, when name is set, name points at
// the archive's index. An archive that names nothing and no name is an
// InvalidRequest.
func (c *Client) ImportImage(ctx context.Context, archive io.Reader, name string) ([]executor.Image, error) {
	ctx = c.nsCtx(ctx)
	opts := []containerd.ImportOpt{containerd.WithImageLabels(map[string]string{labelOwner: c.cellID})}
	if name != "" {
		opts = append(opts, containerd.WithIndexName(name))
	}
	imgs, err := c.client.Import(ctx, archive, opts...)
	if err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge), ctx.Err() != nil, errdefs.IsUnavailable(err):
			return nil, fmt.Errorf("import image: %w", err)
		default:
			// What is left is the archive itself: not a tar, no
			// index.json or manifest.json, a blob missing or corrupt.
			return nil, executor.NewError(executor.ErrInvalidRequest, "not a usable image archive (OCI image layout or docker save tar): %v", err)
		}
	}
	if len(imgs) == 0 {
		return nil, executor.NewError(executor.ErrInvalidRequest, "the archive names no image: give one with ?name= (cellctl import --name)")
	}
	out := make([]executor.Image, 0, len(imgs))
	for _, i := range imgs {
		img := containerd.NewImage(c.client, i)
		if m, err := images.Manifest(ctx, c.client.ContentStore(), i.Target, img.Platform()); err == nil {
			if err := checkLayers(ctx, c.client.ContentStore(), m.Layers, importLimits); err != nil {
				// Nothing may run it: a run would unpack it.
				for _, d := range imgs {
					_ = c.client.ImageService().Delete(ctx, d.Name)
				}
				return nil, fmt.Errorf("image %q: %w", i.Name, err)
			}
		} // else Unpack below says why it cannot use the image
		if err := img.Unpack(ctx, c.snapshotter); err != nil {
			return nil, executor.NewError(executor.ErrInvalidRequest, "image %q imported but cannot be unpacked for this machine: %v", i.Name, err)
		}
		out = append(out, executor.Image{Name: i.Name, Digest: i.Target.Digest.String()})
	}
	return out, nil
}
