package proxyhook_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/clock/fakeclock"
	"sigs.k8s.io/yaml"

	"github.com/cellagent/cellagent/credmanager"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/proxyconfig"
	"github.com/cellagent/cellagent/proxyhook"
)

// fakeAdmin plays cellproxy's admin listener: POST /secrets/reload
// "reloads" the SDS file the hook wrote (it reports the serial whose
// version_info the file carries, as cellproxy would after loading it) or,
// with stuck set, keeps reporting the serial it started with and the
// reload error; notFound answers 404 to everything (Envoy, an old
// cellproxy).
type fakeAdmin struct {
	t        *testing.T
	sdsFile  string
	notFound bool
	stuck    string // when set: the serial served whatever the file says

	mu    sync.Mutex
	posts int // guarded by mu
}

func (a *fakeAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.notFound || r.Method != http.MethodPost || r.URL.Path != "/secrets/reload" {
		http.NotFound(w, r)
		return
	}
	a.mu.Lock()
	a.posts++
	a.mu.Unlock()
	type listener struct {
		Listener     string `json:"listener"`
		Secret       string `json:"secret"`
		Version      string `json:"version"`
		SerialNumber string `json:"serial_number"`
	}
	report := struct {
		Listeners []listener `json:"listeners"`
		Errors    []string   `json:"errors,omitempty"`
	}{}
	serial := a.stuck
	if serial == "" {
		b, err := os.ReadFile(a.sdsFile)
		if err != nil {
			a.t.Errorf("fake admin: %v", err)
		}
		var doc struct {
			Version string `json:"version_info"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			a.t.Errorf("fake admin: %v", err)
		}
		serial = doc.Version
	} else {
		report.Errors = []string{"sds-id-cert-and-key.yaml: broken"}
	}
	// cellproxy prints the serial's bytes: a leading zero where credmanager's
	// text has none.
	if len(serial)%2 == 1 {
		serial = "0" + serial
	}
	report.Listeners = []listener{
		{Listener: "listener-8080", Secret: proxyconfig.CertAndKeySecret, Version: serial, SerialNumber: serial},
		{Listener: "listener-c2c", Secret: proxyconfig.C2CCertAndKeySecret, Version: "c2c", SerialNumber: "ff"},
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(report)
}

func (a *fakeAdmin) postCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.posts
}

// adminInstance runs the hooks for g1 in host mode (no network namespace)
// with its admin port pointing at a fake admin and its host TLS port at
// tlsPort; the proxy is started.
func adminInstance(t *testing.T, f *fixture, admin *fakeAdmin, tlsPort uint16) {
	t.Helper()
	srv := httptest.NewServer(admin)
	t.Cleanup(srv.Close)
	f.adminPort = uint16(srv.Listener.Addr().(*net.TCPAddr).Port)
	inst := f.instance(t, "g1", 10, tlsPort)
	admin.t, admin.sdsFile = t, filepath.Join(f.cfg.DataDir, "proxy", "g1", proxyconfig.CertAndKeyFile)
	if err := f.starter().Start(t.Context(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.starter().Stopping(f.logger, "g1") })
}

func TestRotationConfirmedByOneAdminReload(t *testing.T) {
	// The clock never moves: waiting for ConfirmDelay or a retry would
	// last until ConfirmTimeout and end unconfirmed.
	clk := fakeclock.NewFakeClock(time.Now())
	f := newFixture(t, clk, func(c *proxyhook.Config) {
		c.AdminReload, c.ConfirmDelay, c.ConfirmTimeout = true, time.Hour, 5*time.Second
	})
	admin := &fakeAdmin{}
	// Nothing listens on the host TLS port: a handshake cannot confirm.
	adminInstance(t, f, admin, closedPort(t))

	certPEM, keyPEM, _, serial := f.ca.leaf(t, "g1", 0x123)
	if err := f.hook.CredentialsRotated(f.logger, "g1", credmanager.Credential{CertPEM: certPEM, KeyPEM: keyPEM, Serial: serial}); err != nil {
		t.Fatalf("rotation: %v", err)
	}
	if n := admin.postCount(); n != 1 {
		t.Errorf("POST /secrets/reload %d times, want once", n)
	}
	if !strings.Contains(string(f.logger.Buffer().Contents()), `"by":"admin"`) {
		t.Error(`no "rotation-confirmed" by admin in the log`)
	}
	f.sink.none(t)
}

func TestRotationUnconfirmedWhenTheProxyKeepsTheOldCertificate(t *testing.T) {
	f := newFixture(t, clock.NewClock(), func(c *proxyhook.Config) {
		c.AdminReload, c.ConfirmTimeout = true, 300*time.Millisecond
	})
	admin := &fakeAdmin{stuck: "a"}
	adminInstance(t, f, admin, closedPort(t))

	certPEM, keyPEM, _, serial := f.ca.leaf(t, "g1", 0x124)
	err := f.hook.CredentialsRotated(f.logger, "g1", credmanager.Credential{CertPEM: certPEM, KeyPEM: keyPEM, Serial: serial})
	if err == nil || !strings.Contains(err.Error(), "rotation not confirmed") || !strings.Contains(err.Error(), "serves serial 0a, not the issued 124") ||
		!strings.Contains(err.Error(), "broken") {
		t.Fatalf("rotation = %v, want unconfirmed with the served serial and the proxy's reload error", err)
	}
	if admin.postCount() < 1 {
		t.Error("the proxy was never asked to reload")
	}
	f.sink.expect(t, "publish "+executor.EventRotationUnconfirmed+" g1")
}

func TestRotationConfirmedByHandshakeWhenTheProxyHasNoReload(t *testing.T) {
	f := newFixture(t, clock.NewClock(), func(c *proxyhook.Config) { c.AdminReload = true })
	certPEM, keyPEM, cert, serial := f.ca.leaf(t, "g1", 0x125)
	admin := &fakeAdmin{notFound: true}
	adminInstance(t, f, admin, tlsServer(t, cert))

	if err := f.hook.CredentialsRotated(f.logger, "g1", credmanager.Credential{CertPEM: certPEM, KeyPEM: keyPEM, Serial: serial}); err != nil {
		t.Fatalf("rotation: %v", err)
	}
	if !strings.Contains(string(f.logger.Buffer().Contents()), `"by":"handshake"`) {
		t.Error(`no "rotation-confirmed" by handshake in the log`)
	}
}

func TestRotationUnconfirmedWhenTheAdminListenerIsGone(t *testing.T) {
	f := newFixture(t, clock.NewClock(), func(c *proxyhook.Config) {
		c.AdminReload, c.ConfirmTimeout = true, 300*time.Millisecond
	})
	f.adminPort = closedPort(t)
	inst := f.instance(t, "g1", 10, closedPort(t))
	if err := f.starter().Start(t.Context(), f.logger, inst); err != nil {
		t.Fatal(err)
	}
	defer f.starter().Stopping(f.logger, "g1")
	certPEM, keyPEM, _, serial := f.ca.leaf(t, "g1", 0x126)
	err := f.hook.CredentialsRotated(f.logger, "g1", credmanager.Credential{CertPEM: certPEM, KeyPEM: keyPEM, Serial: serial})
	if err == nil || !strings.Contains(err.Error(), "proxy admin 127.0.0.1:") {
		t.Fatalf("rotation = %v, want unconfirmed naming the admin address", err)
	}
	f.sink.expect(t, "publish "+executor.EventRotationUnconfirmed+" g1")
}
