package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/executor/httpapi"
	"github.com/cellagent/cellagent/fakes"
)

func selfSigned() *tls.Config {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// Issue 13 item 12: the API listeners had no header, idle or handshake
// timeouts; a client that connects and sends nothing held a connection for
// ever.
var _ = Describe("apiServer", func() {
	start := func(tc *tls.Config) string {
		s := newAPIServer("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), tc)
		s.timeouts = serverTimeouts{ReadHeader: 200 * time.Millisecond, Idle: 200 * time.Millisecond}
		addr := make(chan string, 1)
		s.listening = func(a net.Addr) { addr <- a.String() }
		p := ifrit.Invoke(s)
		DeferCleanup(func() { p.Signal(os.Interrupt); Eventually(p.Wait(), 10*time.Second).Should(Receive(BeNil())) })
		return <-addr
	}
	// closedByServer reads until the server closes the connection; the
	// client's own 30s deadline only ends a test that would otherwise hang.
	closedByServer := func(c net.Conn) error {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return err
		}
		return nil
	}

	It("closes a connection that never sends its headers", func() {
		c, err := net.Dial("tcp", start(nil))
		Expect(err).NotTo(HaveOccurred())
		defer c.Close()
		_, _ = c.Write([]byte("GET /v1/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n")) // never ends the headers
		Expect(closedByServer(c)).To(Succeed())
	})

	It("closes a TLS connection that never starts the handshake", func() {
		c, err := net.Dial("tcp", start(selfSigned()))
		Expect(err).NotTo(HaveOccurred())
		defer c.Close()
		Expect(closedByServer(c)).To(Succeed())
	})

	It("closes a kept-alive connection that stays idle", func() {
		c, err := net.Dial("tcp", start(nil))
		Expect(err).NotTo(HaveOccurred())
		defer c.Close()
		_, err = c.Write([]byte("GET /v1/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
		Expect(err).NotTo(HaveOccurred())
		Expect(closedByServer(c)).To(Succeed())
	})
})

var _ = Describe("adminHandler", func() {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	get := func(cfg config.Config, host, path string) int {
		req := httptest.NewRequest("GET", path, nil)
		req.Host = host
		w := httptest.NewRecorder()
		adminHandler(cfg, api).ServeHTTP(w, req)
		return w.Code
	}

	It("serves /debug/pprof only when listen.pprof is set (default off)", func() {
		cfg := config.DefaultConfig()
		Expect(get(cfg, "127.0.0.1:1800", "/debug/pprof/")).To(Equal(http.StatusTeapot), "off: the API's own answer")
		cfg.Listen.Pprof = true
		Expect(get(cfg, "127.0.0.1:1800", "/debug/pprof/")).To(Equal(http.StatusOK))
	})

	It("answers only a loopback Host on the plain loopback listener, pprof included", func() {
		cfg := config.DefaultConfig()
		cfg.Listen.Pprof = true
		Expect(get(cfg, "127.0.0.1:1800", "/v1/ping")).To(Equal(http.StatusTeapot))
		Expect(get(cfg, "rebound.example:1800", "/v1/ping")).To(Equal(http.StatusForbidden))
		Expect(get(cfg, "rebound.example:1800", "/debug/pprof/")).To(Equal(http.StatusForbidden))
	})

	It("leaves the Host alone on a TLS admin listener (mutual TLS authenticates)", func() {
		cfg := config.DefaultConfig()
		cfg.Listen.Admin = "10.0.0.5:1800"
		Expect(get(cfg, "cell-1.example:1800", "/v1/ping")).To(Equal(http.StatusTeapot))
	})
})

// SIGTERM waited up to a minute while `cellctl events --follow` was
// connected (Shutdown waits for open requests; a stream never ends on its
// own), beyond systemd's TimeoutStopSec. Shutdown now ends the streams
// first, and still lets a request in flight finish.
var _ = Describe("apiServer shutdown", func() {
	It("ends an event stream at once and lets a PUT in flight finish", func() {
		fake := &fakes.FakeClient{}
		fake.EventsStub = func(ctx context.Context, _ uint64) (<-chan executor.Event, error) {
			return make(chan executor.Event), nil // nothing ever happens
		}
		entered, release := make(chan struct{}), make(chan struct{})
		fake.AllocateAndRunStub = func(ctx context.Context, guid string, _ executor.RunRequest) (executor.Container, error) {
			close(entered)
			select {
			case <-release:
			case <-ctx.Done():
				return executor.Container{}, ctx.Err()
			}
			return executor.Container{GUID: guid, State: executor.StateRunning}, nil
		}
		s := newAPIServer("127.0.0.1:0", httpapi.New(lagertest.NewTestLogger("api"), httpapi.Config{Client: fake}), nil)
		addr := make(chan string, 1)
		s.listening = func(a net.Addr) { addr <- a.String() }
		p := ifrit.Invoke(s)
		DeferCleanup(func() { p.Signal(os.Kill); Eventually(p.Wait(), 10*time.Second).Should(Receive()) })
		DeferCleanup(func() { // first (cleanups run last in, first out), should the spec fail before the release
			select {
			case <-release:
			default:
				close(release)
			}
		})
		client := executor.NewHTTPClient("http://"+<-addr, nil)

		evs, err := client.Events(context.Background(), 0)
		Expect(err).NotTo(HaveOccurred())
		put := make(chan error, 1)
		go func() {
			_, err := client.AllocateAndRun(context.Background(), "g1",
				executor.RunRequest{Image: "preloaded:busybox", Process: executor.Process{Path: "/bin/sh"}})
			put <- err
		}()
		Eventually(entered, 10*time.Second).Should(BeClosed())

		p.Signal(os.Interrupt)
		var last executor.Event
		Eventually(evs, 10*time.Second).Should(Receive(&last))
		Expect(last.Type).To(Equal(executor.EventStreamEnded))
		Eventually(evs, 10*time.Second).Should(BeClosed())
		Expect(p.Wait()).NotTo(Receive(), "the PUT is still in flight")
		Expect(put).NotTo(Receive())

		close(release)
		Eventually(put, 10*time.Second).Should(Receive(BeNil()))
		Eventually(p.Wait(), 10*time.Second).Should(Receive(BeNil()))
	})
})
