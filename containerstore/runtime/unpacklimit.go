package runtime

import (
	"context"
	"fmt"
	"io"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cellagent/cellagent/executor"
)

// An imported archive is at most httpapi.MaxImageBytes, but its layers are
// gzip or zstd: a few MB can expand to terabytes in the snapshotter and fill
// the disk every instance and the agent's records live on. Before an image
// is unpacked its layers are decompressed once into nothing and counted.
const (
	// MaxUnpackedBytes bounds all layers of one imported image, uncompressed.
	MaxUnpackedBytes = 16 << 30
	// MaxLayerRatio bounds one layer's uncompressed size against its
	// compressed size (text compresses about 10:1; a bomb 1000:1 and more).
	MaxLayerRatio = 100
	// ratioFloor is the uncompressed size a layer may reach whatever its
	// compressed size (small layers of empty files compress very well).
	ratioFloor = 64 << 20
)

// unpackLimits are the caps checkLayers applies.
type unpackLimits struct {
	total int64 // all layers, uncompressed
	ratio int64 // per layer, uncompressed / compressed, above floor
	floor int64
}

var importLimits = unpackLimits{total: MaxUnpackedBytes, ratio: MaxLayerRatio, floor: ratioFloor}

// checkLayers decompresses each layer from provider without writing it
// anywhere and answers InvalidRequest as soon as a layer passes its ratio
// cap or all layers pass the total cap. It reads at most the caps plus one
// byte of uncompressed data.
func checkLayers(ctx context.Context, provider content.Provider, layers []ocispec.Descriptor, lim unpackLimits) error {
	left := lim.total
	for _, l := range layers {
		perLayer := max(l.Size*lim.ratio, lim.floor)
		limit := min(perLayer, left)
		n, err := uncompressedSize(ctx, provider, l, limit+1)
		if err != nil {
			return fmt.Errorf("read layer %s: %w", l.Digest, err)
		}
		if n > limit {
			if limit == perLayer {
				return executor.NewError(executor.ErrInvalidRequest, "layer %s expands past %d bytes (%d compressed; at most %d:1 above %d MiB): refusing to unpack it",
					l.Digest, perLayer, l.Size, lim.ratio, lim.floor>>20)
			}
			return executor.NewError(executor.ErrInvalidRequest, "the image's layers expand past %d bytes in all: refusing to unpack it", lim.total)
		}
		left -= n
	}
	return nil
}

// uncompressedSize counts l's decompressed bytes, reading at most limit.
func uncompressedSize(ctx context.Context, provider content.Provider, l ocispec.Descriptor, limit int64) (int64, error) {
	ra, err := provider.ReaderAt(ctx, l)
	if err != nil {
		return 0, err
	}
	defer ra.Close()
	ds, err := compression.DecompressStream(content.NewReader(ra))
	if err != nil {
		return 0, err
	}
	defer ds.Close()
	return io.Copy(io.Discard, io.LimitReader(ds, limit))
}
