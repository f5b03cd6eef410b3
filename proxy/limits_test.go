package proxy_test

import (
	"io"
	"net"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// Issue 13 item 7: the proxy had no connection cap and no idle timeout.
var _ = Describe("connection limits", func() {
	var f *fixture
	BeforeEach(func() {
		f = newFixture(fixtureOpts{})
		DeferCleanup(func() { f.stop() })
	})

	// closedByProxy reads until the proxy closes c; the 30s deadline only
	// ends a test that would otherwise hang.
	closedByProxy := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := io.Copy(io.Discard, c)
		ne, ok := err.(net.Error)
		return !(ok && ne.Timeout())
	}

	It("closes a connection past MaxConnections at once, and serves again when one ends", func() {
		f.maxConns = 2
		f.start()
		var held []net.Conn
		for range 2 {
			c, err := f.dial(0, f.clientTLS())
			Expect(err).NotTo(HaveOccurred())
			held = append(held, c)
		}
		Eventually(f.backends[0].acceptedCount).Should(Equal(2))
		extra, err := net.Dial("tcp", f.addr(0))
		Expect(err).NotTo(HaveOccurred())
		defer extra.Close()
		Expect(closedByProxy(extra)).To(BeTrue())
		Expect(f.backends[0].acceptedCount()).To(Equal(2), "the connection past the cap never reached the app")

		held[0].Close()
		defer held[1].Close()
		Eventually(func() error {
			c, err := f.dial(0, f.clientTLS())
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = roundTrip(c, "hello")
			return err
		}, ioTimeout).Should(Succeed())
	})

	It("closes a connection idle for IdleTimeout, and not one that keeps talking", func() {
		f.idle = 500 * time.Millisecond
		f.start()
		quiet, err := f.dial(0, f.clientTLS())
		Expect(err).NotTo(HaveOccurred())
		defer quiet.Close()
		Expect(roundTrip(quiet, "once")).To(HaveSuffix("once"))

		busy, err := f.dial(0, f.clientTLS())
		Expect(err).NotTo(HaveOccurred())
		defer busy.Close()
		_ = busy.SetDeadline(time.Now().Add(30 * time.Second))
		for range 10 { // 10 x 100ms: twice the idle timeout in all
			Expect(roundTrip(busy, "again")).To(HaveSuffix("again"))
			time.Sleep(100 * time.Millisecond)
		}
		Expect(closedByProxy(quiet)).To(BeTrue())
	})

	It("does not dial the app for a connection that has sent nothing", func() {
		f.start()
		for range 5 {
			c, err := net.Dial("tcp", f.addr(0))
			Expect(err).NotTo(HaveOccurred())
			defer c.Close()
		}
		c, err := f.dial(0, f.clientTLS())
		Expect(err).NotTo(HaveOccurred())
		defer c.Close()
		Expect(roundTrip(c, "real")).To(HaveSuffix("real"))
		Expect(f.backends[0].acceptedCount()).To(Equal(1), "only the client that spoke reached the app")
	})
})
