package proxyhook_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"go.uber.org/goleak"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/containerstore/containerstorefakes"
	"github.com/cellagent/cellagent/credmanager"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/proxyconfig"
	"github.com/cellagent/cellagent/proxyhook"
)

// TestMain fails the package when a test leaves a goroutine behind: each
// proxy supervisor must end with Stopping, Teardown or its instance's
// failure.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ca issues instance certificates the way credmanager does: a CA, and
// leaves for a guid (DNS SAN) with a chosen serial.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "identity CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &ca{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leaf answers guid's certificate with serial, as PEMs, as a TLS
// certificate, and as credmanager's serial string.
func (c *ca) leaf(t *testing.T, guid string, serial int64) (certPEM, keyPEM []byte, cert tls.Certificate, serialText string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: guid}, DNSNames: []string{guid},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, cert, credmanager.FormatSerial(big.NewInt(serial))
}

// tlsServer serves cert on 127.0.0.1 and answers its port; Close ends it.
func tlsServer(t *testing.T, cert tls.Certificate) uint16 {
	t.Helper()
	port, _ := countingTLSServer(t, cert)
	return port
}

// countingTLSServer is tlsServer that also counts the handshakes it
// completed.
func countingTLSServer(t *testing.T, cert tls.Certificate) (uint16, *atomic.Int32) {
	t.Helper()
	var handshakes atomic.Int32
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					handshakes.Add(1)
				}
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return uint16(l.Addr().(*net.TCPAddr).Port), &handshakes
}

// closedPort answers a loopback port nothing listens on.
func closedPort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// sink records the notices the hook sends the store, in order, as what
// the store does with them.
type sink struct{ calls chan string }

func newSink() *sink { return &sink{calls: make(chan string, 100)} }

func (s *sink) Send(n containerstore.Notice) {
	switch n := n.(type) {
	case containerstore.ProxyExited:
		s.calls <- "unroute " + n.GUID
	case containerstore.ProxyServing:
		s.calls <- "reroute " + n.GUID
	case containerstore.ProxyRestarting:
		s.calls <- fmt.Sprintf("publish %s %s: %s", executor.EventProxyRestarted, n.GUID, n.Message)
	case containerstore.Note:
		s.calls <- fmt.Sprintf("publish %s %s: %s", n.Type, n.GUID, n.Message)
	case containerstore.Failed:
		s.calls <- fmt.Sprintf("fail %s %s: %s", n.GUID, n.Code, n.Reason)
	case containerstore.Liveness:
		s.calls <- fmt.Sprintf("liveness %s: %s", n.GUID, n.Err)
	default:
		s.calls <- fmt.Sprintf("unexpected notice %#v", n)
	}
}

// next answers the next call; a hook that makes none within 10s fails
// the test (a bound, not a timing assertion).
func (s *sink) next(t *testing.T) string {
	t.Helper()
	select {
	case c := <-s.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no call to the sink")
		return ""
	}
}

func (s *sink) expect(t *testing.T, prefixes ...string) {
	t.Helper()
	for _, p := range prefixes {
		if got := s.next(t); !strings.HasPrefix(got, p) {
			t.Fatalf("sink call = %q, want %q...", got, p)
		}
	}
}

func (s *sink) none(t *testing.T) {
	t.Helper()
	select {
	case c := <-s.calls:
		t.Fatalf("unexpected sink call %q", c)
	default:
	}
}

type fixture struct {
	hook   *proxyhook.Hook
	runner *containerstorefakes.FakeProcessRunner
	sink   *sink
	ca     *ca
	cfg    proxyhook.Config
	logger *lagertest.TestLogger

	mu    sync.Mutex
	exits []chan containerstore.Exit // one per Exec, in order

	// adminPort, when set, replaces the admin port the ports step picks
	// (a fake admin's), before the files step writes it.
	adminPort uint16
}

// adminAt is a ports step whose admin port is port.
type adminAt struct {
	containerstore.SetupStep[containerstore.ProxyPortsResult]
	port uint16
}

func (a adminAt) Setup(ctx context.Context, logger lager.Logger, in containerstore.Instance) (containerstore.ProxyPortsResult, error) {
	res, err := a.SetupStep.Setup(ctx, logger, in)
	res.AdminPort = a.port
	return res, err
}

func newFixture(t *testing.T, clk clock.Clock, change func(*proxyhook.Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	binary := filepath.Join(dir, "cellproxy")
	if err := os.WriteFile(binary, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fixture{runner: &containerstorefakes.FakeProcessRunner{}, sink: newSink(), ca: newCA(t), logger: lagertest.NewTestLogger("proxyhook")}
	f.cfg = proxyhook.Config{HostBinary: binary, Proxy: proxyconfig.DefaultConfig(), DataDir: filepath.Join(dir, "data"),
		CACertPEM: f.ca.pem, MemoryOverheadMB: 32, MaxRestarts: 2, Clock: clk, ConfirmTimeout: 2 * time.Second, ConfirmDelay: time.Millisecond,
		User: proxyUser(), Notices: f.sink}
	if change != nil {
		change(&f.cfg)
	}
	f.runner.ExecStub = func(context.Context, lager.Logger, string, string, containerstore.ProcessSpec) (uint32, <-chan containerstore.Exit, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		ch := make(chan containerstore.Exit, 1)
		f.exits = append(f.exits, ch)
		return uint32(os.Getpid()), ch, nil
	}
	var err error
	f.hook, err = proxyhook.New(f.logger, f.cfg, f.runner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.hook.Shutdown)
	return f
}

// exit ends the proxy started by the n-th Exec (0-based).
func (f *fixture) exit(n int, ex containerstore.Exit) {
	f.mu.Lock()
	ch := f.exits[n]
	f.mu.Unlock()
	ch <- ex
}

// instance runs the ports and files hooks for guid as the store would,
// with a certificate of serial; hostPort is its host TLS port.
func (f *fixture) instance(t *testing.T, guid string, serial int64, hostPort uint16) *containerstore.Instance {
	t.Helper()
	certPEM, keyPEM, _, serialText := f.ca.leaf(t, guid, serial)
	inst := &containerstore.Instance{GUID: guid, Request: executor.RunRequest{Ports: []uint16{8080}}, User: containerstore.User{UID: 2000, GID: 2000},
		CertPEM: certPEM, KeyPEM: keyPEM, Credentials: &executor.CredentialInfo{Serial: serialText},
		InternalIP: "127.0.0.1", ExternalIP: "127.0.0.1"}
	if hostPort != 0 {
		// What the Network step, between the two, would have mapped.
		inst.Ports = []executor.PortMapping{{ContainerPort: 8080, HostPort: 40000, ContainerTLSProxyPort: hostPort, HostTLSProxyPort: hostPort}}
	}
	p := containerstore.Pipeline{ProxyPorts: f.hook.PortsHook(), Proxy: f.hook.FilesHook()}
	if f.adminPort != 0 {
		p.ProxyPorts = adminAt{p.ProxyPorts, f.adminPort}
	}
	if err := p.Setup(context.Background(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	return inst
}

// proxyUser is an unprivileged proxy user whose group the test process
// has (so it may give the proxy's files to it without root).
func proxyUser() containerstore.User {
	gid := uint32(os.Getgid())
	if gid == 0 {
		gid = 61000
	}
	return containerstore.User{UID: 61000, GID: gid}
}

func (f *fixture) starter() containerstore.Starter {
	return f.hook.FilesHook().(containerstore.Starter)
}

func TestNewRefusesWhatCannotWork(t *testing.T) {
	good := newFixture(t, clock.NewClock(), nil).cfg
	for want, change := range map[string]func(*proxyhook.Config){
		"not a file":                  func(c *proxyhook.Config) { c.HostBinary = filepath.Join(t.TempDir(), "missing") },
		"holds no file":               func(c *proxyhook.Config) { c.HostBinary = t.TempDir() },
		"identity CA: no certificate": func(c *proxyhook.Config) { c.CACertPEM = []byte("not a certificate") },
		"proxy config: ":              func(c *proxyhook.Config) { c.Proxy.RequireClientCerts = true },
	} {
		cfg := good
		change(&cfg)
		if _, err := proxyhook.New(lagertest.NewTestLogger("t"), cfg, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New = %v, want %q", err, want)
		}
	}
}

func TestPortsHookAllocatesDeterministically(t *testing.T) {
	f := newFixture(t, clock.NewClock(), nil)
	ports := f.hook.PortsHook()
	v := ports.(containerstore.RequestValidator)
	if err := v.ValidateRequest(&executor.RunRequest{Ports: []uint16{8080, 61443}}); !errors.Is(err, executor.ErrInvalidRequest) {
		t.Errorf("ValidateRequest of the C2C port = %v, want an invalid request", err)
	}
	if err := v.ValidateRequest(&executor.RunRequest{Ports: []uint16{8080, 9090}}); err != nil {
		t.Errorf("ValidateRequest: %v", err)
	}
	inst := containerstore.Instance{GUID: "g1", Request: executor.RunRequest{Ports: []uint16{8080, 9090}}}
	res, err := ports.Setup(context.Background(), f.logger, inst)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ports[8080] != 61001 || res.Ports[9090] != 61002 || res.AdminPort != 61003 {
		t.Errorf("ports = %v admin %d, want 8080->61001, 9090->61002, admin 61003", res.Ports, res.AdminPort)
	}
	if res.MemoryOverheadMB != 32 {
		t.Errorf("MemoryOverheadMB = %d, want the configured 32", res.MemoryOverheadMB)
	}
	again, err := ports.(containerstore.Restorer[containerstore.ProxyPortsResult]).Restore(context.Background(), f.logger, inst)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(again) != fmt.Sprint(res) {
		t.Errorf("Restore allocated %v, Setup %v", again, res)
	}
}

func TestFilesHookWritesMountsRestoresAndRemoves(t *testing.T) {
	f := newFixture(t, clock.NewClock(), nil)
	files := f.hook.FilesHook()
	ctx := context.Background()

	bare := containerstore.Instance{GUID: "g0", Request: executor.RunRequest{Ports: []uint16{8080}}}
	if _, err := files.Setup(ctx, f.logger, bare); err == nil || !strings.Contains(err.Error(), "Credentials step must run first") {
		t.Errorf("Setup without credentials = %v, want the order named", err)
	}

	inst := f.instance(t, "g1", 10, 0)
	dir := filepath.Join(f.cfg.DataDir, "proxy", "g1")
	for _, name := range []string{proxyconfig.BootstrapFile, proxyconfig.CertAndKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("proxy file %s: %v", name, err)
		}
	}
	want := []containerstore.Mount{{Source: dir, Destination: f.cfg.Proxy.ConfigDir, ReadOnly: true},
		{Source: f.cfg.HostBinary, Destination: proxyhook.BinaryPath, ReadOnly: true}}
	if fmt.Sprint(inst.Mounts) != fmt.Sprint(want) {
		t.Errorf("mounts = %v, want %v", inst.Mounts, want)
	}

	// A second hook on the same data directory is the agent after a
	// restart: it restores from the files, and refuses without them.
	restarted, err := proxyhook.New(f.logger, f.cfg, f.runner)
	if err != nil {
		t.Fatal(err)
	}
	restorer := restarted.FilesHook().(containerstore.Restorer[containerstore.ProxyResult])
	if _, err := restorer.Restore(ctx, f.logger, containerstore.Instance{GUID: "g1", Request: inst.Request, Credentials: inst.Credentials}); err != nil {
		t.Errorf("Restore with files: %v", err)
	}
	if _, err := restorer.Restore(ctx, f.logger, containerstore.Instance{GUID: "g2", Request: inst.Request}); err == nil {
		t.Error("Restore without files answered no error")
	}
	if _, err := restorer.Restore(ctx, f.logger, containerstore.Instance{GUID: "g3"}); err != nil {
		t.Errorf("Restore of an instance without ports (no proxy): %v", err)
	}

	// Orphans: a directory for a guid the store does not keep goes.
	if err := os.MkdirAll(filepath.Join(f.cfg.DataDir, "proxy", "orphan"), 0o700); err != nil {
		t.Fatal(err)
	}
	cleaner := files.(containerstore.OrphanCleaner)
	if err := cleaner.CleanupOrphans(ctx, f.logger, func(guid string) bool { return guid == "g1" }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(f.cfg.DataDir, "proxy", "orphan")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan directory: %v, want removed", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("kept directory: %v", err)
	}

	if err := files.Teardown(ctx, f.logger, "g1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Teardown: %v, want the directory gone", err)
	}
	if err := files.(containerstore.Verifier).Verify(ctx, f.logger, inst); err == nil {
		t.Error("Verify after Teardown answered no error")
	}
}

// TestSupervisorRestartsWithBackoffThenFails drives one proxy through two
// restarts and the failure after MaxRestarts (2), on a fake clock.
func TestSupervisorRestartsWithBackoffThenFails(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	f := newFixture(t, clk, nil)
	inst := f.instance(t, "g1", 10, 0) // no TLS ports: Ready passes at once
	if err := f.starter().Start(context.Background(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	if n := f.runner.ExecCallCount(); n != 1 {
		t.Fatalf("Exec calls = %d, want 1", n)
	}
	_, _, guid, id, spec := f.runner.ExecArgsForCall(0)
	if guid != "g1" || id != "cellagent-proxy" || spec.Path != proxyhook.BinaryPath || spec.User != f.cfg.User {
		t.Errorf("Exec(%s, %s, %+v), want the proxy binary in g1 as %+v", guid, id, spec, f.cfg.User)
	}

	for i, backoff := range []time.Duration{500 * time.Millisecond, time.Second} {
		f.exit(i, containerstore.Exit{Status: uint32(i + 1)})
		f.sink.expect(t, "unroute g1", fmt.Sprintf("publish proxy_restarted g1: proxy exited with status %d; restart %d in %s", i+1, i+1, backoff))
		clk.WaitForWatcherAndIncrement(backoff - time.Millisecond)
		if n := f.runner.ExecCallCount(); n != i+1 {
			t.Fatalf("restarted before its backoff of %s: %d Exec calls", backoff, n)
		}
		clk.Increment(time.Millisecond)
		clk.WaitForWatcherAndIncrement(200 * time.Millisecond) // first readiness poll
		f.sink.expect(t, "reroute g1")
		if n := f.runner.ExecCallCount(); n != i+2 {
			t.Fatalf("Exec calls = %d, want %d", n, i+2)
		}
	}
	f.exit(2, containerstore.Exit{Status: 7})
	f.sink.expect(t, "unroute g1", "fail g1 proxy_failed: instance proxy failed: exited 3 times in a row (last status 7)")
	// The supervisor ended: Stopping returns at once, goleak checks.
	f.starter().Stopping(f.logger, "g1")
	f.sink.none(t)
}

func TestSupervisorForgetsOldFailuresAfterAMinute(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	f := newFixture(t, clk, func(c *proxyhook.Config) { c.MaxRestarts = 1 })
	inst := f.instance(t, "g1", 10, 0)
	if err := f.starter().Start(context.Background(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	defer f.starter().Stopping(f.logger, "g1")
	f.exit(0, containerstore.Exit{Status: 1})
	f.sink.expect(t, "unroute g1", "publish proxy_restarted g1")
	clk.WaitForWatcherAndIncrement(500 * time.Millisecond)
	clk.WaitForWatcherAndIncrement(200 * time.Millisecond)
	f.sink.expect(t, "reroute g1")
	clk.Increment(2 * time.Minute) // the restarted proxy ran for a while
	f.exit(1, containerstore.Exit{Status: 1})
	f.sink.expect(t, "unroute g1", "publish proxy_restarted g1: proxy exited with status 1; restart 1 in 500ms")
}

func TestSupervisorFailsWhenTheProxyCannotBeStartedAgain(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	f := newFixture(t, clk, func(c *proxyhook.Config) { c.MaxRestarts = 1 })
	inst := f.instance(t, "g1", 10, 0)
	if err := f.starter().Start(context.Background(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	f.runner.ExecStub = nil
	f.runner.ExecReturns(0, nil, errors.New("exec refused"))
	f.exit(0, containerstore.Exit{Status: 1})
	f.sink.expect(t, "unroute g1", "publish proxy_restarted g1")
	clk.WaitForWatcherAndIncrement(500 * time.Millisecond)
	f.sink.expect(t, "fail g1 proxy_failed: instance proxy failed: exec refused")
}

// TestSupervisorReattachesAfterALostWait: a broken wait (containerd
// restarted) is not an exit; the proxy is re-attached, retrying while
// containerd does not answer, and only a proxy that is really gone is
// restarted.
func TestSupervisorReattachesAfterALostWait(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	f := newFixture(t, clk, nil)
	inst := f.instance(t, "g1", 10, 0)
	if err := f.starter().Start(context.Background(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	defer f.starter().Stopping(f.logger, "g1")

	reattached := make(chan containerstore.Exit, 1)
	var attaches int
	f.runner.AttachExecStub = func(context.Context, lager.Logger, string, string) (uint32, <-chan containerstore.Exit, error) {
		attaches++
		switch attaches {
		case 1:
			return 0, nil, errors.New("connection refused") // containerd still down
		case 2:
			return 4242, reattached, nil
		}
		return 0, nil, fmt.Errorf("process cellagent-proxy in g1 is stopped: %w", containerstore.ErrProcessNotRunning)
	}
	f.exit(0, containerstore.Exit{Err: errors.New("wait: connection reset")})
	clk.WaitForWatcherAndIncrement(250 * time.Millisecond)
	// Re-attached: no unroute, no restart.
	reattached <- containerstore.Exit{Err: errors.New("wait: connection reset")}
	// This time the proxy is gone: it counts as an exit (status 255).
	f.sink.expect(t, "unroute g1", "publish proxy_restarted g1: proxy exited with status 255; restart 1 in 500ms")
	if f.runner.AttachExecCallCount() != 3 || f.runner.ExecCallCount() != 1 {
		t.Errorf("AttachExec %d, Exec %d; want 3 attaches and no restart yet", f.runner.AttachExecCallCount(), f.runner.ExecCallCount())
	}
}

func TestAdoptReattachesOrStarts(t *testing.T) {
	f := newFixture(t, clock.NewClock(), nil)
	adopter := f.hook.FilesHook().(interface {
		Adopt(context.Context, lager.Logger, *containerstore.Instance) error
	})
	running := make(chan containerstore.Exit, 1)
	f.runner.AttachExecReturnsOnCall(0, 77, running, nil)
	f.runner.AttachExecReturnsOnCall(1, 0, nil, containerstore.ErrProcessNotRunning)
	g1, g2 := f.instance(t, "g1", 10, 0), f.instance(t, "g2", 11, 0)
	if err := adopter.Adopt(context.Background(), f.logger, g1); err != nil {
		t.Fatal(err)
	}
	if f.runner.ExecCallCount() != 0 {
		t.Error("a running proxy was started again")
	}
	if err := adopter.Adopt(context.Background(), f.logger, g2); err != nil {
		t.Fatal(err)
	}
	if f.runner.ExecCallCount() != 1 {
		t.Error("a proxy that is not running was not started")
	}
	// Stopping ends both supervisors; a second Stopping is a no-op.
	for _, g := range []string{"g1", "g2", "g1"} {
		f.starter().Stopping(f.logger, g)
	}
	running <- containerstore.Exit{Status: 0}
	f.sink.none(t)
}

func TestVerifyReadyAndAliveAsARouterWould(t *testing.T) {
	f := newFixture(t, clock.NewClock(), func(c *proxyhook.Config) {
		c.ConfirmTimeout = 300 * time.Millisecond
		c.UpstreamBeforeHandshake = true
	})
	_, _, served, _ := f.ca.leaf(t, "g1", 10)
	port := tlsServer(t, served)
	inst := f.instance(t, "g1", 10, port)
	files := f.hook.FilesHook()
	ctx := context.Background()
	if err := files.(containerstore.Verifier).Verify(ctx, f.logger, inst); err != nil {
		t.Errorf("Verify of the issued serial: %v", err)
	}
	if err := files.(containerstore.Readiness).Ready(ctx, f.logger, inst); err != nil {
		t.Errorf("Ready: %v", err)
	}
	if err := files.(containerstore.Readiness).Alive(ctx, f.logger, inst); err != nil {
		t.Errorf("Alive: %v", err)
	}
	covering := files.(interface {
		CoversTCP(*containerstore.Instance, uint16) bool
	})
	if !covering.CoversTCP(inst, 8080) || covering.CoversTCP(inst, 9090) {
		t.Error("CoversTCP: want true for the proxied port only")
	}

	// Another serial served (the proxy still has the old certificate).
	_, _, old, _ := f.ca.leaf(t, "g2", 9)
	stale := f.instance(t, "g2", 11, tlsServer(t, old))
	if err := files.(containerstore.Verifier).Verify(ctx, f.logger, stale); err == nil || !strings.Contains(err.Error(), "differs from issued") {
		t.Errorf("Verify of a stale serial = %v, want differs", err)
	}
	// Nothing listening.
	down := f.instance(t, "g3", 12, closedPort(t))
	if err := files.(containerstore.Readiness).Ready(ctx, f.logger, down); err == nil {
		t.Error("Ready with nothing listening answered no error")
	}
	if err := files.(containerstore.Readiness).Alive(ctx, f.logger, down); err == nil {
		t.Error("Alive with nothing listening answered no error")
	}
}

// At a start Verify follows Ready at once: where Ready's handshakes on
// the host TLS ports saw the issued serial, Verify takes them instead of
// handshaking again, and only once; a Ready that saw another serial
// proves nothing.
func TestVerifyTakesTheHandshakesOfTheReadyBeforeIt(t *testing.T) {
	f := newFixture(t, clock.NewClock(), func(c *proxyhook.Config) { c.ConfirmTimeout = 300 * time.Millisecond })
	_, _, served, _ := f.ca.leaf(t, "g1", 10)
	port, handshakes := countingTLSServer(t, served)
	inst := f.instance(t, "g1", 10, port)
	// Nothing at the container's port: Ready must dial the host port, the
	// router's path, for Verify to take its handshakes.
	inst.Ports[0].ContainerTLSProxyPort = closedPort(t)
	files := f.hook.FilesHook()
	ctx := context.Background()
	// The server counts a handshake after the client's: wait for it.
	expect := func(what string, n int32) {
		t.Helper()
		for range 200 {
			if handshakes.Load() == n {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond) // and no other comes
		if got := handshakes.Load(); got != n {
			t.Fatalf("%s: %d handshakes, want %d", what, got, n)
		}
	}
	if err := files.(containerstore.Readiness).Ready(ctx, f.logger, inst); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	expect("Ready", 1)
	if err := files.(containerstore.Verifier).Verify(ctx, f.logger, inst); err != nil {
		t.Fatalf("Verify after Ready: %v", err)
	}
	expect("Verify right after Ready", 1)
	if err := files.(containerstore.Verifier).Verify(ctx, f.logger, inst); err != nil {
		t.Fatalf("second Verify: %v", err)
	}
	expect("a second Verify (what Ready saw is used once)", 2)

	// A Ready that saw another serial than the issued one proves nothing.
	_, _, old, _ := f.ca.leaf(t, "g2", 9)
	stalePort, staleHandshakes := countingTLSServer(t, old)
	stale := f.instance(t, "g2", 11, stalePort)
	if err := files.(containerstore.Readiness).Ready(ctx, f.logger, stale); err != nil {
		t.Fatalf("Ready (any serial): %v", err)
	}
	if err := files.(containerstore.Verifier).Verify(ctx, f.logger, stale); err == nil || !strings.Contains(err.Error(), "differs from issued") {
		t.Errorf("Verify of a stale serial after Ready = %v, want differs", err)
	}
	if staleHandshakes.Load() < 2 {
		t.Errorf("stale proxy: %d handshakes, want Verify's own after Ready's", staleHandshakes.Load())
	}
}

// Where the routes name the container's address, Ready dials the proxy's
// container port (the router's path) and Verify its own host ports.
func TestReadyDialsTheContainerPortWhenRoutesNameIt(t *testing.T) {
	f := newFixture(t, clock.NewClock(), func(c *proxyhook.Config) {
		c.ConfirmTimeout = 300 * time.Millisecond
		c.RoutesToInstanceAddress = true
	})
	_, _, served, _ := f.ca.leaf(t, "g1", 10)
	hostPort, hostHandshakes := countingTLSServer(t, served)
	containerPort, containerHandshakes := countingTLSServer(t, served)
	inst := f.instance(t, "g1", 10, hostPort)
	inst.Ports[0].ContainerTLSProxyPort = containerPort
	ctx := context.Background()
	if err := f.hook.FilesHook().(containerstore.Readiness).Ready(ctx, f.logger, inst); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if err := f.hook.FilesHook().(containerstore.Verifier).Verify(ctx, f.logger, inst); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	for range 200 {
		if containerHandshakes.Load() == 1 && hostHandshakes.Load() == 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if c, h := containerHandshakes.Load(), hostHandshakes.Load(); c != 1 || h != 1 {
		t.Errorf("handshakes: container port %d, host port %d; want 1 each (Ready there, Verify here)", c, h)
	}
}

func TestCredentialsRotated(t *testing.T) {
	f := newFixture(t, clock.NewClock(), func(c *proxyhook.Config) { c.ConfirmTimeout = 500 * time.Millisecond })
	ctx := context.Background()
	certPEM, keyPEM, newCert, newSerial := f.ca.leaf(t, "g1", 20)
	cred := credmanager.Credential{CertPEM: certPEM, KeyPEM: keyPEM, Serial: newSerial}

	if err := f.hook.CredentialsRotated(f.logger, "nobody", cred); err != nil {
		t.Errorf("rotation of a guid without a proxy: %v", err)
	}

	// Not running yet: the file is rewritten, nothing to confirm.
	port := tlsServer(t, newCert)
	inst := f.instance(t, "g1", 10, port)
	if err := f.hook.CredentialsRotated(f.logger, "g1", cred); err != nil {
		t.Fatalf("rotation before the proxy runs: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(f.cfg.DataDir, "proxy", "g1", proxyconfig.CertAndKeyFile))
	if err != nil || !strings.Contains(string(b), newSerial) {
		t.Errorf("certificate file after rotation (err %v) does not carry serial %s", err, newSerial)
	}

	// Running, and the proxy serves the new serial: confirmed.
	if err := f.starter().Start(ctx, f.logger, inst); err != nil {
		t.Fatal(err)
	}
	defer f.starter().Stopping(f.logger, "g1")
	if err := f.hook.CredentialsRotated(f.logger, "g1", cred); err != nil {
		t.Errorf("confirmed rotation: %v", err)
	}

	// Running, and the proxy keeps the old one: unconfirmed, retried.
	certPEM3, keyPEM3, _, serial3 := f.ca.leaf(t, "g1", 30)
	err = f.hook.CredentialsRotated(f.logger, "g1", credmanager.Credential{CertPEM: certPEM3, KeyPEM: keyPEM3, Serial: serial3})
	if err == nil || !strings.Contains(err.Error(), "rotation not confirmed") {
		t.Errorf("unconfirmed rotation = %v, want an error", err)
	}
	f.sink.expect(t, "publish "+executor.EventRotationUnconfirmed+" g1")

	// A key that does not match is refused before anything is written.
	if err := f.hook.CredentialsRotated(f.logger, "g1", credmanager.Credential{CertPEM: certPEM, KeyPEM: keyPEM3, Serial: "x"}); err == nil {
		t.Error("a mismatched pair was accepted")
	}

	// Files but no instance: an agent restart is restoring it.
	restarted, err := proxyhook.New(f.logger, f.cfg, f.runner)
	if err != nil {
		t.Fatal(err)
	}
	if err := restarted.CredentialsRotated(f.logger, "g1", cred); err == nil || !strings.Contains(err.Error(), "not restored yet") {
		t.Errorf("rotation before restore = %v, want not restored yet", err)
	}
}

func TestUsageSplitsTheCgroupsTotal(t *testing.T) {
	f := newFixture(t, clock.NewClock(), nil)
	if u := f.hook.Usage("g1", 1000, nil); u.AppBytes != 1000 || u.ProxyBytes != 0 {
		t.Errorf("Usage without a proxy = %+v, want all of it the app's", u)
	}
	inst := f.instance(t, "g1", 10, 0)
	if err := f.starter().Start(context.Background(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	defer f.starter().Stopping(f.logger, "g1")
	// The fake proxy's pid is this test process: its RssAnon is real.
	const total = 1 << 40
	u := f.hook.Usage("g1", total, nil)
	if u.ProxyBytes == 0 || u.AppBytes+u.ProxyBytes != total {
		t.Errorf("Usage = %+v, want a proxy share and the rest the app's", u)
	}
	if u := f.hook.Usage("g1", 1, nil); u.ProxyBytes != 1 || u.AppBytes != 0 {
		t.Errorf("Usage with a total below the proxy's RSS = %+v, want the proxy capped at the total", u)
	}
}
