package logfile_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/logfile"
)

var _ = Describe("OpenTagged", func() {
	var (
		dir          string
		app, proxy   string
		sources      []logfile.Source
		appW, proxyW *logfile.Capped
	)

	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		app, proxy = filepath.Join(dir, "app.log"), filepath.Join(dir, "proxy.log")
		sources = []logfile.Source{{Tag: "app", Path: app}, {Tag: "proxy", Path: proxy}}
		var err error
		appW, err = logfile.OpenCapped(app, 1<<20)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(appW.Close)
	})

	openProxy := func() {
		var err error
		proxyW, err = logfile.OpenCapped(proxy, 1<<20)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(proxyW.Close)
	}

	It("tags every line with its source, app first, and ends a partial last line", func() {
		openProxy()
		_, _ = appW.Write([]byte("one\ntwo\npartial"))
		_, _ = proxyW.Write([]byte("listening on 61001\n"))
		rc, err := logfile.OpenTagged(context.Background(), sources, false, 0)
		Expect(err).NotTo(HaveOccurred())
		defer rc.Close()
		b, err := io.ReadAll(rc)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(b)).To(Equal("[app] one\n[app] two\n[app] partial\n[proxy] listening on 61001\n"))
	})

	It("skips a source whose file does not exist", func() {
		_, _ = appW.Write([]byte("only the app\n"))
		rc, err := logfile.OpenTagged(context.Background(), sources, false, 0)
		Expect(err).NotTo(HaveOccurred())
		defer rc.Close()
		b, err := io.ReadAll(rc)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(b)).To(Equal("[app] only the app\n"))
	})

	It("cuts a line longer than 64 KiB into tagged pieces", func() {
		long := strings.Repeat("x", 70<<10)
		_, _ = appW.Write([]byte(long + "\n"))
		rc, err := logfile.OpenTagged(context.Background(), sources[:1], false, 0)
		Expect(err).NotTo(HaveOccurred())
		defer rc.Close()
		b, err := io.ReadAll(rc)
		Expect(err).NotTo(HaveOccurred())
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		Expect(lines).To(HaveLen(2))
		Expect(lines[0]).To(HavePrefix("[app] x"))
		Expect(lines[1]).To(HavePrefix("[app] x"))
		Expect(len(lines[0]) + len(lines[1])).To(Equal(len(long) + 2*len("[app] ")))
	})

	It("follows both files, waits for one that appears later, and never splits a line", func() {
		_, _ = appW.Write([]byte("before\n"))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rc, err := logfile.OpenTagged(ctx, sources, true, 10*time.Millisecond)
		Expect(err).NotTo(HaveOccurred())
		c := collect(rc)
		Eventually(c.String).Should(Equal("[app] before\n"))

		openProxy() // the proxy starts after the app
		_, _ = proxyW.Write([]byte("proxy up\n"))
		Eventually(c.String).Should(ContainSubstring("[proxy] proxy up\n"))

		_, _ = appW.Write([]byte("half "))
		Consistently(c.String, 100*time.Millisecond).ShouldNot(ContainSubstring("half"))
		_, _ = appW.Write([]byte("and the rest\n"))
		Eventually(c.String).Should(ContainSubstring("[app] half and the rest\n"))

		Expect(rc.Close()).To(Succeed())
		Eventually(c.done).Should(Receive())
	})

	It("ends a follow when the context ends", func() {
		ctx, cancel := context.WithCancel(context.Background())
		rc, err := logfile.OpenTagged(ctx, sources, true, 10*time.Millisecond)
		Expect(err).NotTo(HaveOccurred())
		defer rc.Close()
		c := collect(rc)
		cancel()
		Eventually(c.done).Should(Receive(Equal(io.EOF)))
	})

	It("passes on an error opening a source", func() {
		Expect(os.Remove(app)).To(Succeed())
		Expect(os.Mkdir(app, 0o755)).To(Succeed()) // a directory: reading it fails
		rc, err := logfile.OpenTagged(context.Background(), sources[:1], false, 0)
		Expect(err).NotTo(HaveOccurred())
		defer rc.Close()
		_, err = io.ReadAll(rc)
		Expect(err).To(HaveOccurred())
	})
})
