package proxy_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/tedsuo/ifrit"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/proxy"
	"github.com/cellagent/cellagent/proxyconfig"
)

const (
	instanceGUID = "instance-guid"
	pollInterval = time.Second
	ioTimeout    = 5 * time.Second // a bound on a stuck test, not a speed assertion
)

// fixture is a proxy in front of echo backends, all on loopback, with
// files written by proxyconfig into a temp dir that plays the mount.
type fixture struct {
	dir      string
	ca       *testCA
	server   issued
	cfg      proxyconfig.Config
	backends []*echoServer
	mappings []proxyconfig.Mapping
	admin    uint16
	clock    *fakeclock.FakeClock
	drain    time.Duration
	logger   *lagertest.TestLogger
	proc     ifrit.Process
	// maxConns and idle, when set, are the proxy's MaxConnections and
	// IdleTimeout.
	maxConns int
	idle     time.Duration
}

type fixtureOpts struct {
	ports     int
	mtls      bool
	clientCA  *testCA
	verifySAN []string
	drain     time.Duration
}

func newFixture(o fixtureOpts) *fixture {
	if o.ports == 0 {
		o.ports = 1
	}
	f := &fixture{
		dir:    GinkgoT().TempDir(),
		ca:     newCA("identity-ca"),
		clock:  fakeclock.NewFakeClock(time.Now()),
		drain:  o.drain,
		logger: lagertest.NewTestLogger("proxy-test"),
	}
	f.server = f.ca.issue(instanceGUID, instanceGUID, "10.255.0.7")
	f.cfg = proxyconfig.Config{ConfigDir: f.dir}
	if o.mtls {
		f.cfg.RequireClientCerts = true
		f.cfg.TrustedCAPEM = o.clientCA.pem
		f.cfg.VerifySAN = o.verifySAN
	}
	ports := freePorts(o.ports + 1)
	for i := 0; i < o.ports; i++ {
		b := startEcho(fmt.Sprintf("app-%d", i))
		f.backends = append(f.backends, b)
		f.mappings = append(f.mappings, proxyconfig.Mapping{AppPort: b.port(), ProxyPort: ports[i]})
	}
	f.admin = ports[o.ports]
	Expect(proxyconfig.Write(f.dir, f.cfg, f.mappings, f.admin, f.server.certPEM, f.server.keyPEM, "1")).To(Succeed())
	return f
}

func (f *fixture) bootstrapPath() string { return filepath.Join(f.dir, proxyconfig.BootstrapFile) }

func (f *fixture) newProxy() (*proxy.Proxy, error) {
	return proxy.New(f.logger, proxy.Config{
		BootstrapPath:  f.bootstrapPath(),
		DrainTimeout:   f.drain,
		PollInterval:   pollInterval,
		Clock:          f.clock,
		MaxConnections: f.maxConns,
		IdleTimeout:    f.idle,
	})
}

func (f *fixture) start() {
	p, err := f.newProxy()
	Expect(err).NotTo(HaveOccurred())
	f.proc = ifrit.Invoke(p)
	select {
	case err := <-f.proc.Wait():
		Fail(fmt.Sprintf("proxy exited at start: %v", err))
	default:
	}
}

// stop signals the proxy and waits for it; open connections must be gone
// (drain 0 closes them at once).
func (f *fixture) stop() {
	if f.proc != nil {
		f.proc.Signal(syscall.SIGTERM)
		Eventually(f.proc.Wait(), ioTimeout).Should(Receive(BeNil()))
		f.proc = nil
	}
	for _, b := range f.backends {
		b.close()
	}
}

func (f *fixture) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: f.ca.pool(), ServerName: instanceGUID}
}

func (f *fixture) addr(i int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(f.mappings[i].ProxyPort)))
}

// dial connects and completes a handshake with listener i.
func (f *fixture) dial(i int, cfg *tls.Config) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: ioTimeout}
	c, err := tls.DialWithDialer(d, "tcp", f.addr(i), cfg)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	return c, nil
}

// servedSerial is the serial a new handshake on listener i sees.
func (f *fixture) servedSerial(i int) string {
	c, err := f.dial(i, f.clientTLS())
	Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	return serialOf(c)
}

func serialOf(c *tls.Conn) string {
	return fmt.Sprintf("%x", c.ConnectionState().PeerCertificates[0].SerialNumber.Bytes())
}

func (f *fixture) adminGet(path string) (int, string) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: ioTimeout}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", f.admin, path))
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return resp.StatusCode, string(body)
}

// secrets asks /secrets or /secrets/reload and decodes the answer.
func (f *fixture) secrets(method, path string) proxy.SecretsReport {
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", f.admin, path), nil)
	Expect(err).NotTo(HaveOccurred())
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: ioTimeout}
	resp, err := client.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	Expect(resp.StatusCode).To(Equal(http.StatusOK))
	var report proxy.SecretsReport
	Expect(json.NewDecoder(resp.Body).Decode(&report)).To(Succeed())
	return report
}

// roundTrip sends a line and expects the backend's name and the line back;
// with TLS 1.3 a rejected client certificate shows up here, not in Dial.
func roundTrip(c net.Conn, line string) (string, error) {
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	got, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return got[:len(got)-1], nil
}

// echoServer answers each line with "<name>: <line>" and mirrors a
// half-close: EOF from the client makes it close its write side.
type echoServer struct {
	name string
	ln   net.Listener
	wg   sync.WaitGroup

	mu       sync.Mutex
	conns    map[net.Conn]struct{} // guarded by mu
	accepted int                   // guarded by mu: connections ever accepted
}

func (e *echoServer) acceptedCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.accepted
}

func startEcho(name string) *echoServer {
	ln, err := listenSafe()
	Expect(err).NotTo(HaveOccurred())
	e := &echoServer{name: name, ln: ln, conns: map[net.Conn]struct{}{}}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns[c] = struct{}{}
			e.accepted++
			e.mu.Unlock()
			e.wg.Add(1)
			go e.serve(c)
		}
	}()
	return e
}

func (e *echoServer) serve(c net.Conn) {
	defer e.wg.Done()
	defer func() {
		e.mu.Lock()
		delete(e.conns, c)
		e.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if errors.Is(err, io.EOF) {
			_ = c.(*net.TCPConn).CloseWrite()
			_, _ = io.Copy(io.Discard, r)
			return
		}
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(c, "%s: %s", e.name, line); err != nil {
			return
		}
	}
}

func (e *echoServer) port() uint16 { return uint16(e.ln.Addr().(*net.TCPAddr).Port) }

func (e *echoServer) close() {
	e.ln.Close()
	e.mu.Lock()
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

func freePorts(n int) []uint16 {
	ports, err := safePorts(n)
	Expect(err).NotTo(HaveOccurred())
	return ports
}

// Test ports come from [20000, 32000): below the kernel's ephemeral range
// (32768+) and outside the agent's host-port range (40000-59999), where
// other tests on this machine install CNI port-forwarding (DNAT) rules that
// also catch connections to 127.0.0.1.
const testPortLow, testPortHigh = 20000, 32000

func listenSafe() (net.Listener, error) {
	var err error
	for i := 0; i < 100; i++ {
		port := testPortLow + rand.IntN(testPortHigh-testPortLow)
		var ln net.Listener
		ln, err = net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			return ln, nil
		}
	}
	return nil, fmt.Errorf("no free test port: %w", err)
}

func safePorts(n int) ([]uint16, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []uint16
	for len(ports) < n {
		ln, err := listenSafe()
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, uint16(ln.Addr().(*net.TCPAddr).Port))
	}
	return ports, nil
}

// certSerials lists the leaf serials /certs reports, one per listener.
func certSerials(body string) []string {
	var report proxy.CertsReport
	Expect(json.Unmarshal([]byte(body), &report)).To(Succeed())
	var out []string
	for _, c := range report.Certificates {
		Expect(c.CertChain).To(HaveLen(1))
		out = append(out, c.CertChain[0].SerialNumber)
	}
	return out
}

func lagerDiscard() lager.Logger { return lager.NewLogger("discard") }
