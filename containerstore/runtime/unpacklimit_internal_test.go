package runtime

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cellagent/cellagent/executor"
)

// memProvider serves blobs from memory.
type memProvider map[digest.Digest][]byte

type memReaderAt struct{ *bytes.Reader }

func (memReaderAt) Close() error { return nil }

func (m memProvider) ReaderAt(_ context.Context, d ocispec.Descriptor) (content.ReaderAt, error) {
	b, ok := m[d.Digest]
	if !ok {
		return nil, errors.New("not found")
	}
	return memReaderAt{bytes.NewReader(b)}, nil
}

func (m memProvider) add(b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	m[d] = b
	return ocispec.Descriptor{Digest: d, Size: int64(len(b))}
}

func gz(n int) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	zeros := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, len(zeros))
		_, _ = w.Write(zeros[:k])
		n -= k
	}
	_ = w.Close()
	return buf.Bytes()
}

// Issue 13 item 12: image import had no decompression cap; a layer of a
// few KB of gzip expanded without limit into the snapshotter.
func TestCheckLayersRefusesADecompressionBomb(t *testing.T) {
	p := memProvider{}
	bomb := p.add(gz(64 << 20)) // 64 MiB of zeros: about 64 KiB of gzip, 1000:1
	lim := unpackLimits{total: 1 << 30, ratio: 100, floor: 1 << 20}
	err := checkLayers(context.Background(), p, []ocispec.Descriptor{bomb}, lim)
	if !errors.Is(err, executor.ErrInvalidRequest) || !strings.Contains(err.Error(), "at most 100:1") {
		t.Fatalf("a 1000:1 layer: got %v, want InvalidRequest about the ratio", err)
	}
}

func TestCheckLayersCapsTheTotal(t *testing.T) {
	p := memProvider{}
	a, b := p.add(gz(3<<20)), p.add(gz(3<<20))
	lim := unpackLimits{total: 5 << 20, ratio: 10000, floor: 1 << 20}
	err := checkLayers(context.Background(), p, []ocispec.Descriptor{a, b}, lim)
	if !errors.Is(err, executor.ErrInvalidRequest) || !strings.Contains(err.Error(), "in all") {
		t.Fatalf("6 MiB of layers under a 5 MiB total: got %v, want InvalidRequest about the total", err)
	}
}

func TestCheckLayersAcceptsOrdinaryLayers(t *testing.T) {
	p := memProvider{}
	plain := p.add(bytes.Repeat([]byte("uncompressed tar bytes "), 1000))
	small := p.add(gz(512 << 10)) // under the floor whatever its ratio
	lim := unpackLimits{total: 1 << 30, ratio: 100, floor: 1 << 20}
	if err := checkLayers(context.Background(), p, []ocispec.Descriptor{plain, small}, lim); err != nil {
		t.Fatalf("ordinary layers: %v", err)
	}
}
