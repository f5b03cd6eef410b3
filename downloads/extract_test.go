package downloads_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/downloads"
)

// extractInto writes archive to a file and extracts it into a fresh
// target directory "target" beside a directory "outside".
func extractInto(archive []byte, owner *downloads.Owner, lim downloads.Limits) (base string, n int64, err error) {
	base = GinkgoT().TempDir()
	Expect(os.Mkdir(filepath.Join(base, "target"), 0o755)).To(Succeed())
	Expect(os.Mkdir(filepath.Join(base, "outside"), 0o755)).To(Succeed())
	p := filepath.Join(base, "archive")
	Expect(os.WriteFile(p, archive, 0o600)).To(Succeed())
	f, err := os.Open(p)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	root, err := os.OpenRoot(filepath.Join(base, "target"))
	Expect(err).NotTo(HaveOccurred())
	defer root.Close()
	n, err = downloads.Extract(context.Background(), f, root, owner, lim)
	return base, n, err
}

var lim = downloads.Limits{MaxBytes: 1 << 20, MaxEntries: 100}

var _ = Describe("Extract", func() {
	It("extracts a tgz with directories, modes, symbolic and hard links", func() {
		base, n, err := extractInto(tgz(entry{Name: "./app/", Dir: true, Mode: 0o750}, entry{Name: "app/run.sh", Body: "#!/bin/sh\n", Mode: 0o4755},
			entry{Name: "app/link", Link: "run.sh"}, entry{Name: "app/hard", HardLink: "app/run.sh"}, entry{Name: "deep/a/b", Body: "b"}), nil, lim)
		Expect(err).NotTo(HaveOccurred())
		Expect(n).To(BeEquivalentTo(11))
		t := filepath.Join(base, "target")
		fi, err := os.Stat(filepath.Join(t, "app/run.sh"))
		Expect(err).NotTo(HaveOccurred())
		Expect(fi.Mode()).To(Equal(os.FileMode(0o755)), "setuid dropped")
		Expect(os.Readlink(filepath.Join(t, "app/link"))).To(Equal("run.sh"))
		Expect(os.ReadFile(filepath.Join(t, "app/hard"))).To(Equal([]byte("#!/bin/sh\n")))
		Expect(os.ReadFile(filepath.Join(t, "deep/a/b"))).To(Equal([]byte("b")))
		fi, err = os.Stat(filepath.Join(t, "app"))
		Expect(err).NotTo(HaveOccurred())
		Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o750)))
	})

	It("extracts a plain tar and a zip", func() {
		base, _, err := extractInto(tarBytes(entry{Name: "a", Body: "tar"}), nil, lim)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.ReadFile(filepath.Join(base, "target/a"))).To(Equal([]byte("tar")))
		base, _, err = extractInto(zipBytes(map[string]string{"dir/z": "zip"}), nil, lim)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.ReadFile(filepath.Join(base, "target/dir/z"))).To(Equal([]byte("zip")))
	})

	DescribeTable("refuses unsafe entries and writes nothing outside the target",
		func(archive []byte) {
			base, _, err := extractInto(archive, nil, lim)
			Expect(err).To(MatchError(downloads.ErrUnsafeEntry))
			Expect(os.ReadDir(filepath.Join(base, "outside"))).To(BeEmpty())
		},
		Entry("a '..' name", tgz(entry{Name: "../outside/x", Body: "x"})),
		Entry("a '..' in the middle", tgz(entry{Name: "a/../../outside/x", Body: "x"})),
		Entry("an absolute name", tgz(entry{Name: "/outside/x", Body: "x"})),
		Entry("a file through a symbolic link leaving the target", tgz(entry{Name: "l", Link: "../outside"}, entry{Name: "l/x", Body: "x"})),
		Entry("a file through an absolute symbolic link", tgz(entry{Name: "l", Link: "/"}, entry{Name: "l/x", Body: "x"})),
		Entry("a hard link to a file outside", tgz(entry{Name: "h", HardLink: "../outside/y"})),
		Entry("a device file", tgz(entry{Name: "dev", Type: tar.TypeChar})),
		Entry("a zip with '..'", zipBytes(map[string]string{"../outside/x": "x"})),
	)

	It("bounds the bytes and entries an archive extracts to", func() {
		_, _, err := extractInto(tgz(entry{Name: "a", Body: "0123456789"}), nil, downloads.Limits{MaxBytes: 5, MaxEntries: 10})
		Expect(err).To(MatchError(ContainSubstring("more than 5 bytes")))
		_, _, err = extractInto(tgz(entry{Name: "a"}, entry{Name: "b"}, entry{Name: "c"}), nil, downloads.Limits{MaxBytes: 5, MaxEntries: 2})
		Expect(err).To(MatchError(ContainSubstring("more than 2 entries")))
	})

	It("extracts a regular file by its type flag, counting its bytes, whatever its mode bits say", func() {
		dirBits := int64(0o40644)
		_, _, err := extractInto(tgz(entry{Name: "a", Body: "0123456789", Mode: dirBits}), nil, downloads.Limits{MaxBytes: 5, MaxEntries: 10})
		Expect(err).To(MatchError(ContainSubstring("more than 5 bytes")))
		base, n, err := extractInto(tgz(entry{Name: "a", Body: "0123456789", Mode: dirBits}), nil, lim)
		Expect(err).NotTo(HaveOccurred())
		Expect(n).To(BeEquivalentTo(10))
		Expect(os.ReadFile(filepath.Join(base, "target/a"))).To(Equal([]byte("0123456789")))
	})

	It("counts global PAX headers against the entry bound", func() {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for range 3 {
			Expect(tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "g"}})).To(Succeed())
		}
		Expect(tw.Close()).To(Succeed())
		_, _, err := extractInto(buf.Bytes(), nil, downloads.Limits{MaxBytes: 5, MaxEntries: 2})
		Expect(err).To(MatchError(ContainSubstring("more than 2 entries")))
	})

	It("bounds the decompressed stream, headers included", func() {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		for i := range 3 {
			Expect(tw.WriteHeader(&tar.Header{Name: fmt.Sprint("d", i, "/"), Typeflag: tar.TypeDir, Mode: 0o755,
				PAXRecords: map[string]string{"comment": strings.Repeat("x", 900<<10)}})).To(Succeed())
		}
		Expect(tw.Close()).To(Succeed())
		Expect(gz.Close()).To(Succeed())
		_, _, err := extractInto(buf.Bytes(), nil, downloads.Limits{MaxBytes: 5, MaxEntries: 10})
		Expect(err).To(MatchError(ContainSubstring("stream is longer than")))
		_, _, err = extractInto(buf.Bytes(), nil, downloads.Limits{MaxBytes: 4 << 20, MaxEntries: 10})
		Expect(err).NotTo(HaveOccurred())
	})

	It("refuses a zip whose directory lists more entries than the bound before extracting any", func() {
		base, _, err := extractInto(zipBytes(map[string]string{"a": "a", "b": "b", "c": "c"}), nil, downloads.Limits{MaxBytes: 5, MaxEntries: 2})
		Expect(err).To(MatchError(ContainSubstring("directory lists 3 entries, more than 2")))
		Expect(os.ReadDir(filepath.Join(base, "target"))).To(BeEmpty())
	})

	It("refuses to replace an existing entry that is not the owner's, and replaces the owner's", func() {
		tgzA := tgz(entry{Name: "a", Body: "new"}, entry{Name: "h", HardLink: "a"})
		extract := func(owner *downloads.Owner) (string, error) {
			base := GinkgoT().TempDir()
			Expect(os.WriteFile(filepath.Join(base, "a"), []byte("old"), 0o644)).To(Succeed())
			p := filepath.Join(GinkgoT().TempDir(), "archive")
			Expect(os.WriteFile(p, tgzA, 0o600)).To(Succeed())
			f, err := os.Open(p)
			Expect(err).NotTo(HaveOccurred())
			defer f.Close()
			root, err := os.OpenRoot(base)
			Expect(err).NotTo(HaveOccurred())
			defer root.Close()
			_, err = downloads.Extract(context.Background(), f, root, owner, lim)
			return base, err
		}
		base, err := extract(&downloads.Owner{UID: os.Getuid() + 1, GID: os.Getgid()})
		Expect(err).To(MatchError(downloads.ErrUnsafeEntry))
		Expect(err.Error()).To(ContainSubstring("a exists and belongs to uid"))
		Expect(os.ReadFile(filepath.Join(base, "a"))).To(Equal([]byte("old")))
		base, err = extract(&downloads.Owner{UID: os.Getuid(), GID: os.Getgid()})
		Expect(err).NotTo(HaveOccurred())
		Expect(os.ReadFile(filepath.Join(base, "h"))).To(Equal([]byte("new")))
	})

	It("shares a Budget between extractions", func() {
		shared := downloads.Limits{MaxBytes: 1 << 20, MaxEntries: 10, Shared: downloads.NewBudget(15)}
		_, _, err := extractInto(tgz(entry{Name: "a", Body: "0123456789"}), nil, shared)
		Expect(err).NotTo(HaveOccurred())
		_, _, err = extractInto(tgz(entry{Name: "b", Body: "0123456789"}), nil, shared)
		Expect(err).To(MatchError(ContainSubstring("the downloads extract to more than 15 bytes")))
	})

	It("stops with its context", func() {
		base := GinkgoT().TempDir()
		p := filepath.Join(base, "archive")
		Expect(os.WriteFile(p, tgz(entry{Name: "a", Body: "a"}), 0o600)).To(Succeed())
		f, err := os.Open(p)
		Expect(err).NotTo(HaveOccurred())
		defer f.Close()
		root, err := os.OpenRoot(base)
		Expect(err).NotTo(HaveOccurred())
		defer root.Close()
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(errors.New("exceeded 1s timeout"))
		_, err = downloads.Extract(ctx, f, root, nil, lim)
		Expect(err).To(MatchError("exceeded 1s timeout"))
		Expect(filepath.Join(base, "a")).NotTo(BeAnExistingFile())
	})

	It("gives every entry, and the directories it makes, to the owner", func() {
		if os.Geteuid() != 0 {
			Skip("chown needs root")
		}
		base, _, err := extractInto(tgz(entry{Name: "d/f", Body: "x"}, entry{Name: "d/l", Link: "f"}, entry{Name: "e/", Dir: true}),
			&downloads.Owner{UID: 2000, GID: 2001}, lim)
		Expect(err).NotTo(HaveOccurred())
		for _, p := range []string{"d", "d/f", "d/l", "e"} {
			fi, err := os.Lstat(filepath.Join(base, "target", p))
			Expect(err).NotTo(HaveOccurred())
			st := fi.Sys().(*syscall.Stat_t)
			Expect([]uint32{st.Uid, st.Gid}).To(Equal([]uint32{2000, 2001}), p)
		}
	})
})
