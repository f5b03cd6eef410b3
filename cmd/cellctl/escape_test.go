package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/fakes"
)

var _ = DescribeTable("escapeWriter",
	func(chunks []string, want string) {
		var buf bytes.Buffer
		ew := &escapeWriter{w: &buf}
		for _, c := range chunks {
			n, err := ew.Write([]byte(c))
			Expect(err).NotTo(HaveOccurred())
			Expect(n).To(Equal(len(c)))
		}
		Expect(ew.Flush()).To(Succeed())
		Expect(buf.String()).To(Equal(want))
	},
	Entry("plain text, newlines and tabs pass", []string{"héllo\n\tworld ✓\n"}, "héllo\n\tworld ✓\n"),
	Entry("clear screen", []string{"\x1b[2J\x1b[H"}, `\x1b[2J\x1b[H`),
	Entry("window title (OSC)", []string{"\x1b]0;owned\x07"}, `\x1b]0;owned\x07`),
	Entry("carriage return and backspace", []string{"ok\rno\b"}, `ok\x0dno\x08`),
	Entry("DEL", []string{"a\x7fb"}, `a\x7fb`),
	Entry("C1 CSI as UTF-8", []string{"\u009b31m"}, `\u009b31m`),
	Entry("a byte that is not UTF-8", []string{"a\xffb"}, `a\xffb`),
	Entry("a UTF-8 sequence cut between writes", []string{"caf\xc3", "\xa9\n"}, "café\n"),
	Entry("a cut sequence at the end of the stream", []string{"x\xe2\x9c"}, `x\xe2\x9c`),
)

// openPTY answers a pseudo-terminal's master and slave.
func openPTY() (master, slave *os.File) {
	GinkgoHelper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	Expect(err).NotTo(HaveOccurred())
	Expect(unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0)).To(Succeed())
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	Expect(err).NotTo(HaveOccurred())
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	Expect(err).NotTo(HaveOccurred())
	return master, slave
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Issue 13 item 12: cellctl logs printed an app's raw escape sequences to
// the operator's terminal.
var _ = Describe("cellctl logs", func() {
	const appOutput = "\x1b]0;owned\x07\x1b[2Jhello\n"
	logsTo := func(out io.Writer, args ...string) {
		GinkgoHelper()
		client := &fakes.FakeClient{}
		client.LogsReturns(io.NopCloser(strings.NewReader(appOutput)), nil)
		c := &cli{client: client, out: out}
		Expect(c.logs(context.Background(), append(args, "g1"), io.Discard)).To(Succeed())
	}

	It("escapes control characters when stdout is a terminal", func() {
		if _, err := os.Stat("/dev/ptmx"); err != nil {
			Skip("no /dev/ptmx")
		}
		master, slave := openPTY()
		defer slave.Close()
		var seen syncBuffer
		done := make(chan struct{})
		go func() { defer close(done); _, _ = io.Copy(&seen, master) }()
		logsTo(slave)
		Eventually(seen.String).Should(ContainSubstring(`\x1b]0;owned\x07\x1b[2Jhello`))
		Expect(seen.String()).NotTo(ContainSubstring("\x1b"))
		master.Close()
		slave.Close()
		Eventually(done).Should(BeClosed())
	})

	It("passes the output as it is to a pipe or file, and to a terminal with --raw", func() {
		var buf bytes.Buffer
		logsTo(&buf)
		Expect(buf.String()).To(Equal(appOutput))

		r, w, err := os.Pipe()
		Expect(err).NotTo(HaveOccurred())
		defer r.Close()
		logsTo(w)
		w.Close()
		b, _ := io.ReadAll(r)
		Expect(string(b)).To(Equal(appOutput))

		if _, err := os.Stat("/dev/ptmx"); err == nil {
			master, slave := openPTY()
			defer slave.Close()
			var seen syncBuffer
			done := make(chan struct{})
			go func() { defer close(done); _, _ = io.Copy(&seen, master) }()
			logsTo(slave, "--raw")
			Eventually(seen.String).Should(ContainSubstring("\x1b]0;owned\x07"))
			master.Close()
			slave.Close()
			Eventually(done).Should(BeClosed())
		}
	})
})
