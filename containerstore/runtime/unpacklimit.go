package runtime

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cellagent/cellagent/executor"
)

// An imported archive is at most httpapi.MaxImageBytes (a pull fetches at
// most MaxPullBytes), but its layers are gzip or zstd: a few MB can expand
// to terabytes in the snapshotter and fill the disk every instance and the
// agent's records live on. Before an image
// is unpacked its layers are decompressed once into nothing and read as
// the tar streams the unpack reads: their bytes and entries are counted,
// and a sparse entry (GNU or PAX sparse), which the unpack would write out
// at its declared size in zeros, is refused.
const (
	// MaxUnpackedBytes bounds all layers of one imported or pulled image,
	// uncompressed.
	MaxUnpackedBytes = 16 << 30
	// MaxLayerRatio bounds one layer's uncompressed size against its
	// compressed size (text compresses about 10:1; a bomb 1000:1 and more).
	MaxLayerRatio = 100
	// ratioFloor is the uncompressed size a layer may reach whatever its
	// compressed size (small layers of empty files compress very well).
	ratioFloor = 64 << 20
	// MaxImageEntries bounds the tar entries (files, directories, links)
	// of all layers of one image: each is an inode in the snapshotter.
	MaxImageEntries = 1 << 20
)

// unpackLimits are the caps checkLayers applies.
type unpackLimits struct {
	total   int64 // all layers, uncompressed
	ratio   int64 // per layer, uncompressed / compressed, above floor
	floor   int64
	entries int64 // all layers' tar entries
}

var importLimits = unpackLimits{total: MaxUnpackedBytes, ratio: MaxLayerRatio, floor: ratioFloor, entries: MaxImageEntries}

// checkLayers decompresses each layer from provider without writing it
// anywhere, reads it as a tar stream and answers InvalidRequest as soon as
// a layer passes its ratio cap, all layers pass the total or the entry
// cap, or a layer holds a sparse entry. It reads at most the caps plus one
// byte of uncompressed data.
func checkLayers(ctx context.Context, provider content.Provider, layers []ocispec.Descriptor, lim unpackLimits) error {
	left, entries := lim.total, lim.entries
	for _, l := range layers {
		perLayer := max(l.Size*lim.ratio, lim.floor)
		limit := min(perLayer, left)
		n, err := scanLayer(ctx, provider, l, limit+1, &entries, lim.entries)
		if err != nil {
			return err
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

// errPastLimit ends a layer's read at its byte limit.
var errPastLimit = errors.New("past the limit")

// limitedReader counts what it reads and fails past limit.
type limitedReader struct {
	r        io.Reader
	n, limit int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n >= l.limit {
		return 0, errPastLimit
	}
	p = p[:min(int64(len(p)), l.limit-l.n)]
	k, err := l.r.Read(p)
	l.n += int64(k)
	return k, err
}

// scanLayer reads l's decompressed tar stream, at most limit bytes of it,
// and answers how many it read (limit when it stopped there). Each entry
// takes one of entries; a sparse entry, a stream that is not a tar or an
// entry past entries is an InvalidRequest.
func scanLayer(ctx context.Context, provider content.Provider, l ocispec.Descriptor, limit int64, entries *int64, maxEntries int64) (int64, error) {
	ra, err := provider.ReaderAt(ctx, l)
	if err != nil {
		return 0, fmt.Errorf("read layer %s: %w", l.Digest, err)
	}
	defer ra.Close()
	ds, err := compression.DecompressStream(content.NewReader(ra))
	if err != nil {
		return 0, fmt.Errorf("read layer %s: %w", l.Digest, err)
	}
	defer ds.Close()
	lr := &limitedReader{r: ds, limit: limit}
	tr := tar.NewReader(lr)
	for {
		hdr, err := tr.Next()
		switch {
		case errors.Is(err, errPastLimit):
			return limit, nil
		case errors.Is(err, io.EOF):
			// The unpack reads what follows the end-of-archive blocks
			// too (to digest the layer): it counts.
			if _, err := io.Copy(io.Discard, lr); errors.Is(err, errPastLimit) {
				return limit, nil
			} else if err != nil {
				return 0, fmt.Errorf("read layer %s: %w", l.Digest, err)
			}
			return lr.n, nil
		case err != nil:
			return 0, executor.NewError(executor.ErrInvalidRequest, "layer %s is not a usable tar stream: %v", l.Digest, err)
		}
		if sparse(hdr) {
			return 0, executor.NewError(executor.ErrInvalidRequest, "layer %s: entry %q is a sparse file (its holes would be written out in full): refusing to unpack it", l.Digest, hdr.Name)
		}
		if *entries--; *entries < 0 {
			return 0, executor.NewError(executor.ErrInvalidRequest, "the image's layers hold more than %d entries: refusing to unpack it", maxEntries)
		}
	}
}

// sparse says whether hdr is a GNU sparse entry (old GNU format or GNU's
// sparse PAX records, any version).
func sparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}
