package runtime

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"strconv"
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
	lim := unpackLimits{total: 1 << 30, ratio: 100, floor: 1 << 20, entries: 10}
	err := checkLayers(context.Background(), p, []ocispec.Descriptor{bomb}, lim)
	if !errors.Is(err, executor.ErrInvalidRequest) || !strings.Contains(err.Error(), "at most 100:1") {
		t.Fatalf("a 1000:1 layer: got %v, want InvalidRequest about the ratio", err)
	}
}

func TestCheckLayersCapsTheTotal(t *testing.T) {
	p := memProvider{}
	a, b := p.add(gz(3<<20)), p.add(gz(3<<20))
	lim := unpackLimits{total: 5 << 20, ratio: 10000, floor: 1 << 20, entries: 10}
	err := checkLayers(context.Background(), p, []ocispec.Descriptor{a, b}, lim)
	if !errors.Is(err, executor.ErrInvalidRequest) || !strings.Contains(err.Error(), "in all") {
		t.Fatalf("6 MiB of layers under a 5 MiB total: got %v, want InvalidRequest about the total", err)
	}
}

// tarOf writes the entries as one tar stream, each file's body as given.
func tarOf(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := w.WriteHeader(e.hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type tarEntry struct {
	hdr  *tar.Header
	body []byte
}

// paxRecords is a PAX extended header for the next entry, written by hand:
// archive/tar drops GNU.sparse records it is given.
func paxRecords(t *testing.T, kv ...string) []byte {
	t.Helper()
	var recs []byte
	for i := 0; i+1 < len(kv); i += 2 {
		rec := " " + kv[i] + "=" + kv[i+1] + "\n"
		n := len(rec)
		for len(strconv.Itoa(n+len(strconv.Itoa(n)))) != len(strconv.Itoa(n)) {
			n++
		}
		recs = append(recs, strconv.Itoa(len(rec)+len(strconv.Itoa(n)))+rec...)
	}
	b := tarOf(t, file("PaxHeaders/big", recs))
	b = b[:512+(len(recs)+511)/512*512] // without the end-of-archive blocks
	b[156] = tar.TypeXHeader
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func file(name string, body []byte) tarEntry {
	return tarEntry{&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}, body}
}

func TestCheckLayersAcceptsOrdinaryLayers(t *testing.T) {
	p := memProvider{}
	plain := p.add(tarOf(t, file("etc/motd", bytes.Repeat([]byte("uncompressed tar bytes "), 1000)),
		tarEntry{&tar.Header{Name: "etc/", Mode: 0o755, Typeflag: tar.TypeDir}, nil}))
	small := p.add(gz(512 << 10)) // under the floor whatever its ratio
	lim := unpackLimits{total: 1 << 30, ratio: 100, floor: 1 << 20, entries: 10}
	if err := checkLayers(context.Background(), p, []ocispec.Descriptor{plain, small}, lim); err != nil {
		t.Fatalf("ordinary layers: %v", err)
	}
}

// Reviewer finding: a sparse entry declares a real size that the unpack
// writes out in zeros, while its stream is a few blocks: counting stream
// bytes let a 1 GiB file through in a 2 KiB layer.
func TestCheckLayersRefusesSparseEntries(t *testing.T) {
	// GNU's PAX sparse format 1.0: the body is the sparse map (one
	// 4-byte region at 0), padded to a block, then the region's data.
	body := append([]byte("1\n0\n4\n"), make([]byte, 512-6)...)
	body = append(body, "data"...)
	paxSparse := append(paxRecords(t, "GNU.sparse.major", "1", "GNU.sparse.minor", "0", "GNU.sparse.name", "big",
		"GNU.sparse.realsize", "1073741824"), tarOf(t, file("GNUSparseFile.0/big", body))...)
	oldSparse := tarOf(t, tarEntry{&tar.Header{Name: "old", Mode: 0o644, Typeflag: tar.TypeGNUSparse, Format: tar.FormatGNU}, nil})
	lim := unpackLimits{total: 1 << 30, ratio: 100, floor: 1 << 20, entries: 10}
	for name, stream := range map[string][]byte{"pax": paxSparse, "gnu": oldSparse} {
		p := memProvider{}
		layer := p.add(stream)
		err := checkLayers(context.Background(), p, []ocispec.Descriptor{layer}, lim)
		if !errors.Is(err, executor.ErrInvalidRequest) || !strings.Contains(err.Error(), "sparse file") {
			t.Errorf("%s sparse entry: got %v, want InvalidRequest about a sparse file", name, err)
		}
	}
}

func TestCheckLayersCapsTheEntries(t *testing.T) {
	p := memProvider{}
	a := p.add(tarOf(t, file("a", nil), file("b", nil), file("c", nil)))
	b := p.add(tarOf(t, file("d", nil), file("e", nil)))
	lim := unpackLimits{total: 1 << 30, ratio: 100, floor: 1 << 20, entries: 4}
	err := checkLayers(context.Background(), p, []ocispec.Descriptor{a, b}, lim)
	if !errors.Is(err, executor.ErrInvalidRequest) || !strings.Contains(err.Error(), "more than 4 entries") {
		t.Fatalf("5 entries under a cap of 4: got %v, want InvalidRequest about the entries", err)
	}
	lim.entries = 5
	if err := checkLayers(context.Background(), p, []ocispec.Descriptor{a, b}, lim); err != nil {
		t.Fatalf("5 entries under a cap of 5: %v", err)
	}
}

func TestCheckLayersRefusesWhatIsNotATar(t *testing.T) {
	p := memProvider{}
	junk := p.add(bytes.Repeat([]byte("not a tar stream "), 100))
	lim := unpackLimits{total: 1 << 30, ratio: 100, floor: 1 << 20, entries: 10}
	err := checkLayers(context.Background(), p, []ocispec.Descriptor{junk}, lim)
	if !errors.Is(err, executor.ErrInvalidRequest) || !strings.Contains(err.Error(), "not a usable tar stream") {
		t.Fatalf("a layer of text: got %v, want InvalidRequest", err)
	}
}
