package logfile_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/logfile"
)

// collector reads r to the end in the background.
type collector struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan error
}

func collect(r io.Reader) *collector {
	c := &collector{done: make(chan error, 1)}
	go func() {
		b := make([]byte, 1024)
		for {
			n, err := r.Read(b)
			c.mu.Lock()
			c.buf.Write(b[:n])
			c.mu.Unlock()
			if err != nil {
				c.done <- err
				return
			}
		}
	}()
	return c
}

func (c *collector) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

var _ = Describe("Logfile", func() {
	var (
		dir  string
		path string
	)

	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		path = filepath.Join(dir, "logs", "g1", "app.log")
	})

	read := func(p string) string {
		GinkgoHelper()
		b, err := os.ReadFile(p)
		Expect(err).NotTo(HaveOccurred())
		return string(b)
	}

	write := func(w io.Writer, s string) {
		GinkgoHelper()
		n, err := io.WriteString(w, s)
		Expect(err).NotTo(HaveOccurred())
		Expect(n).To(Equal(len(s)))
	}

	Describe("Capped", func() {
		It("makes the directory and appends up to the cap without rotating", func() {
			c, err := logfile.OpenCapped(path, 10)
			Expect(err).NotTo(HaveOccurred())
			defer c.Close()
			write(c, "12345")
			write(c, "67890")
			Expect(read(path)).To(Equal("1234567890"))
			Expect(path + ".1").NotTo(BeAnExistingFile())
		})

		It("rotates when a write would pass the cap, keeping one previous generation", func() {
			c, err := logfile.OpenCapped(path, 10)
			Expect(err).NotTo(HaveOccurred())
			defer c.Close()
			write(c, "1234567890")
			write(c, "abc")
			Expect(read(path + ".1")).To(Equal("1234567890"))
			Expect(read(path)).To(Equal("abc"))

			write(c, "defghij")
			Expect(read(path)).To(Equal("abcdefghij"))
			write(c, "k")
			Expect(read(path + ".1")).To(Equal("abcdefghij"))
			Expect(read(path)).To(Equal("k"))

			entries, err := os.ReadDir(filepath.Dir(path))
			Expect(err).NotTo(HaveOccurred())
			Expect(entries).To(HaveLen(2), "only the current and one previous generation")
		})

		It("writes a single write larger than the cap whole", func() {
			c, err := logfile.OpenCapped(path, 4)
			Expect(err).NotTo(HaveOccurred())
			defer c.Close()
			write(c, "0123456789")
			Expect(read(path)).To(Equal("0123456789"))
			write(c, "x")
			Expect(read(path + ".1")).To(Equal("0123456789"))
			Expect(read(path)).To(Equal("x"))
		})

		It("counts what the file already holds when it is reopened", func() {
			c, err := logfile.OpenCapped(path, 10)
			Expect(err).NotTo(HaveOccurred())
			write(c, "12345678")
			Expect(c.Close()).To(Succeed())

			c, err = logfile.OpenCapped(path, 10)
			Expect(err).NotTo(HaveOccurred())
			defer c.Close()
			write(c, "9")
			Expect(read(path)).To(Equal("123456789"))
			write(c, "ab")
			Expect(read(path + ".1")).To(Equal("123456789"))
			Expect(read(path)).To(Equal("ab"))
		})

		It("uses the default cap when none is given", func() {
			c, err := logfile.OpenCapped(path, 0)
			Expect(err).NotTo(HaveOccurred())
			defer c.Close()
			big := bytes.Repeat([]byte("x"), logfile.DefaultMaxBytes-1)
			_, err = c.Write(big)
			Expect(err).NotTo(HaveOccurred())
			write(c, "y")
			Expect(path + ".1").NotTo(BeAnExistingFile())
			write(c, "z")
			Expect(path + ".1").To(BeAnExistingFile())
			Expect(read(path)).To(Equal("z"))
		})

		It("is safe for concurrent writers and loses nothing within the two generations", func() {
			c, err := logfile.OpenCapped(path, 1<<20)
			Expect(err).NotTo(HaveOccurred())
			defer c.Close()
			var wg sync.WaitGroup
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := 0; j < 100; j++ {
						_, _ = c.Write([]byte("0123456789\n"))
					}
				}()
			}
			wg.Wait()
			Expect(read(path)).To(HaveLen(8 * 100 * 11))
		})
	})

	Describe("Open without follow", func() {
		It("reads the previous generation, then the current one", func() {
			c, err := logfile.OpenCapped(path, 6)
			Expect(err).NotTo(HaveOccurred())
			defer c.Close()
			write(c, "old-1\n")
			write(c, "new-2\n")
			r, err := logfile.Open(context.Background(), path, false, 0)
			Expect(err).NotTo(HaveOccurred())
			b, err := io.ReadAll(r)
			Expect(err).NotTo(HaveOccurred())
			Expect(r.Close()).To(Succeed())
			Expect(string(b)).To(Equal("old-1\nnew-2\n"))
		})

		It("reads just the current file when there is no previous generation", func() {
			c, err := logfile.OpenCapped(path, 100)
			Expect(err).NotTo(HaveOccurred())
			defer c.Close()
			write(c, "only\n")
			r, err := logfile.Open(context.Background(), path, false, 0)
			Expect(err).NotTo(HaveOccurred())
			defer r.Close()
			Expect(io.ReadAll(r)).To(BeEquivalentTo("only\n"))
		})

		It("fails with a not-exist error when there is no file", func() {
			_, err := logfile.Open(context.Background(), path, false, 0)
			Expect(os.IsNotExist(err)).To(BeTrue())
		})
	})

	Describe("Open with follow", func() {
		var (
			capped *logfile.Capped
			ctx    context.Context
			cancel context.CancelFunc
		)

		BeforeEach(func() {
			var err error
			capped, err = logfile.OpenCapped(path, 8)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(capped.Close)
			ctx, cancel = context.WithCancel(context.Background())
			DeferCleanup(cancel)
		})

		It("sees appended data and carries on across a rotation, in order and without loss", func() {
			write(capped, "aaaa")
			r, err := logfile.Open(ctx, path, true, 5*time.Millisecond)
			Expect(err).NotTo(HaveOccurred())
			out := collect(r)

			Eventually(out.String).Should(Equal("aaaa"))
			write(capped, "bbbb")
			Eventually(out.String).Should(Equal("aaaabbbb"))
			write(capped, "cccc") // rotates: .1 = aaaabbbb
			Expect(read(path + ".1")).To(Equal("aaaabbbb"))
			Eventually(out.String).Should(Equal("aaaabbbbcccc"))
			write(capped, "dddd")
			write(capped, "eeee") // rotates again
			Eventually(out.String).Should(Equal("aaaabbbbccccddddeeee"))

			Expect(r.Close()).To(Succeed())
			// Close cancels the follower and closes the pipe: a read in
			// flight ends with whichever lands first.
			Eventually(out.done).Should(Receive(Or(Equal(io.EOF), MatchError(io.ErrClosedPipe))))
		})

		It("ends with EOF when ctx ends", func() {
			write(capped, "x")
			r, err := logfile.Open(ctx, path, true, 5*time.Millisecond)
			Expect(err).NotTo(HaveOccurred())
			defer r.Close()
			out := collect(r)
			Eventually(out.String).Should(Equal("x"))
			Consistently(out.done, "30ms").ShouldNot(Receive())
			cancel()
			Eventually(out.done).Should(Receive(Equal(io.EOF)))
		})
	})

	Describe("RunShimDriver", func() {
		It("fails without the path argument, naming it", func() {
			err := logfile.RunShimDriver([]string{"max-bytes", "4096"}, "log-path")
			Expect(err).To(MatchError(ContainSubstring("no log-path argument")))
		})

		It("fails when the path key has no value", func() {
			err := logfile.RunShimDriver([]string{"max-bytes", "4096", "log-path"}, "log-path")
			Expect(err).To(MatchError(ContainSubstring("no log-path argument")))
		})

		It("fails when the log file cannot be made", func() {
			blocker := filepath.Join(dir, "file")
			Expect(os.WriteFile(blocker, nil, 0o600)).To(Succeed())
			err := logfile.RunShimDriver([]string{"log-path", filepath.Join(blocker, "sub", "app.log")}, "log-path")
			Expect(err).To(MatchError(ContainSubstring("logging driver: ")))
		})
	})
})
