package proxy_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/cellagent/cellagent/proxy"
	"github.com/cellagent/cellagent/proxyconfig"
)

// Benchmarks (all loopback; bound them with -benchtime, e.g.
//   go test ./proxy -run '^$' -bench . -benchtime 3000x
// ). They compare the same work done directly and through cellproxy.

type benchEnv struct {
	proxyAddr   string
	plainAddr   string // backend without TLS (what the proxy forwards to)
	tlsAddr     string // the same backend behind Go's own TLS, for reference
	echoAddr    string // proxy listener in front of a raw echo backend
	rawEchoAddr string
	client      *tls.Config
}

func setupBench(b *testing.B) *benchEnv {
	b.Helper()
	ca := newCA("bench-ca")
	leaf := ca.issue(instanceGUID, instanceGUID)

	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	plainLn := benchListen(b)
	plain := &http.Server{Handler: handler}
	go func() { _ = plain.Serve(plainLn) }()
	b.Cleanup(func() { plain.Close() })

	tlsLn := tls.NewListener(benchListen(b), &tls.Config{Certificates: []tls.Certificate{leaf.tlsCert()}})
	withTLS := &http.Server{Handler: handler}
	go func() { _ = withTLS.Serve(tlsLn) }()
	b.Cleanup(func() { withTLS.Close() })

	echoLn := benchListen(b)
	go func() {
		for {
			c, err := echoLn.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	b.Cleanup(func() { echoLn.Close() })

	dir := b.TempDir()
	ports := benchFreePorts(b, 3)
	mappings := []proxyconfig.Mapping{
		{AppPort: port(plainLn), ProxyPort: ports[0]},
		{AppPort: port(echoLn), ProxyPort: ports[1]},
	}
	if err := proxyconfig.Write(dir, proxyconfig.Config{ConfigDir: dir}, mappings, ports[2], leaf.certPEM, leaf.keyPEM, "1"); err != nil {
		b.Fatal(err)
	}
	p, err := proxy.New(lager.NewLogger("bench"), proxy.Config{BootstrapPath: filepath.Join(dir, proxyconfig.BootstrapFile)})
	if err != nil {
		b.Fatal(err)
	}
	proc := ifrit.Invoke(p)
	b.Cleanup(func() {
		proc.Signal(syscall.SIGTERM)
		<-proc.Wait()
	})
	return &benchEnv{
		proxyAddr:   fmt.Sprintf("127.0.0.1:%d", ports[0]),
		echoAddr:    fmt.Sprintf("127.0.0.1:%d", ports[1]),
		plainAddr:   plainLn.Addr().String(),
		tlsAddr:     tlsLn.Addr().String(),
		rawEchoAddr: echoLn.Addr().String(),
		client:      &tls.Config{RootCAs: ca.pool(), ServerName: instanceGUID},
	}
}

// BenchmarkKeepAliveRequests: HTTP/1.1 GETs over one kept-alive connection.
func BenchmarkKeepAliveRequests(b *testing.B) {
	env := setupBench(b)
	cases := []struct{ name, url string }{
		{"direct-plain", "http://" + env.plainAddr + "/"},
		{"direct-go-tls", "https://" + env.tlsAddr + "/"},
		{"through-cellproxy", "https://" + env.proxyAddr + "/"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			tr := &http.Transport{TLSClientConfig: env.client, MaxIdleConnsPerHost: 1, ForceAttemptHTTP2: false}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			get(b, client, c.url) // connect and handshake outside the timing
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				get(b, client, c.url)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkNewTLSHandshakes: a new connection and full handshake each time
// (no session resumption), ECDSA P-256 certificate.
func BenchmarkNewTLSHandshakes(b *testing.B) {
	env := setupBench(b)
	for _, c := range []struct{ name, addr string }{
		{"direct-go-tls", env.tlsAddr},
		{"through-cellproxy", env.proxyAddr},
	} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				conn, err := tls.Dial("tcp", c.addr, env.client)
				if err != nil {
					b.Fatal(err)
				}
				conn.Close()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
}

// BenchmarkThroughput: 64 KiB echoed per op over one connection.
func BenchmarkThroughput(b *testing.B) {
	env := setupBench(b)
	payload := make([]byte, 64<<10)
	for _, c := range []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"direct-plain", func() (net.Conn, error) { return net.Dial("tcp", env.rawEchoAddr) }},
		{"through-cellproxy", func() (net.Conn, error) { return tls.Dial("tcp", env.echoAddr, env.client) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			conn, err := c.dial()
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			buf := make([]byte, len(payload))
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				go func() { _, _ = conn.Write(payload) }()
				if _, err := io.ReadFull(conn, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func get(b *testing.B, c *http.Client, url string) {
	resp, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

func benchListen(b *testing.B) net.Listener {
	ln, err := listenSafe()
	if err != nil {
		b.Fatal(err)
	}
	return ln
}

func benchFreePorts(b *testing.B, n int) []uint16 {
	ports, err := safePorts(n)
	if err != nil {
		b.Fatal(err)
	}
	return ports
}

func port(ln net.Listener) uint16 { return uint16(ln.Addr().(*net.TCPAddr).Port) }
