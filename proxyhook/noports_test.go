package proxyhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/lager/v3/lagertest"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/credmanager"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/proxyconfig"
)

// execRecorder is a ProcessRunner that records what it was asked to run;
// the processes it "starts" never exit.
type execRecorder struct {
	mu      sync.Mutex
	execs   []string
	attachs []string
}

func (r *execRecorder) Exec(_ context.Context, _ lager.Logger, guid, id string, _ containerstore.ProcessSpec) (uint32, <-chan containerstore.Exit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.execs = append(r.execs, guid+"/"+id)
	return 42, make(chan containerstore.Exit), nil
}

func (r *execRecorder) AttachExec(_ context.Context, _ lager.Logger, guid, id string) (uint32, <-chan containerstore.Exit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attachs = append(r.attachs, guid+"/"+id)
	return 42, make(chan containerstore.Exit), nil
}

func (r *execRecorder) SignalExec(context.Context, string, string, syscall.Signal) error { return nil }

func (r *execRecorder) counts() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.execs), len(r.attachs)
}

// newTestHook is a Hook over a temporary data dir whose processes runner
// records, with a self-signed identity for g1 (its PEM serves as the CA).
func newTestHook(t *testing.T) (h *Hook, runner *execRecorder, caPEM, keyPEM []byte) {
	t.Helper()
	cert, caPEM := selfSigned(t, "g1")
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	dataDir := t.TempDir()
	bin := filepath.Join(dataDir, "cellproxy")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	runner = &execRecorder{}
	h, err = New(lagertest.NewTestLogger("proxy"), Config{HostBinary: bin, Proxy: proxyconfig.DefaultConfig(),
		DataDir: dataDir, CACertPEM: caPEM, MemoryOverheadMB: 32, User: testProxyUser()}, runner)
	if err != nil {
		t.Fatal(err)
	}
	return h, runner, caPEM, keyPEM
}

// TestNoPortsNoProxy: an app without ports gets no proxy at all (no
// ports, overhead, files, mounts, process or verification), while an app
// with ports gets every one of them from the same hook.
func TestNoPortsNoProxy(t *testing.T) {
	h, runner, caPEM, keyPEM := newTestHook(t)
	logger := lagertest.NewTestLogger("test")
	ctx := context.Background()

	setUp := func(t *testing.T, guid string, ports []uint16) *containerstore.Instance {
		t.Helper()
		inst := &containerstore.Instance{GUID: guid, Request: executor.RunRequest{Ports: ports},
			InternalIP: "127.0.0.1", ExternalIP: "127.0.0.1",
			Credentials: &executor.CredentialInfo{Serial: "07"}, CertPEM: caPEM, KeyPEM: keyPEM}
		p := containerstore.Pipeline{ProxyPorts: h.PortsHook(), Proxy: h.FilesHook()}
		if err := p.Setup(ctx, logger, inst); err != nil {
			t.Fatalf("setup of %s: %v", guid, err)
		}
		if err := h.FilesHook().(containerstore.Starter).Start(ctx, logger, inst); err != nil {
			t.Fatalf("start proxy of %s: %v", guid, err)
		}
		return inst
	}

	t.Run("without ports", func(t *testing.T) {
		inst := setUp(t, "g1", nil)
		if len(inst.ProxyPorts) != 0 || inst.ProxyAdminPort != 0 {
			t.Errorf("proxy ports %v, admin %d; want none", inst.ProxyPorts, inst.ProxyAdminPort)
		}
		if inst.MemoryOverheadMB != 0 {
			t.Errorf("memory overhead %d MB, want 0", inst.MemoryOverheadMB)
		}
		if len(inst.Mounts) != 0 {
			t.Errorf("mounts %v, want none", inst.Mounts)
		}
		if _, err := os.Stat(h.dir("g1")); !os.IsNotExist(err) {
			t.Errorf("proxy files of g1: %v, want none", err)
		}
		if execs, _ := runner.counts(); execs != 0 {
			t.Errorf("%d proxy processes started, want none", execs)
		}
		if err := h.FilesHook().(containerstore.Verifier).Verify(ctx, logger, inst); err != nil {
			t.Errorf("verify: %v, want nothing to verify", err)
		}
		if err := h.FilesHook().(containerstore.Readiness).Ready(ctx, logger, inst); err != nil {
			t.Errorf("ready: %v, want nothing to wait for", err)
		}
		if err := (containerstore.Pipeline{Proxy: h.FilesHook()}).Restore(ctx, logger, inst); err != nil {
			t.Errorf("restore: %v, want nothing to restore", err)
		}
		if err := h.FilesHook().(containerstore.Starter).Adopt(ctx, logger, inst); err != nil {
			t.Errorf("adopt: %v", err)
		}
		if execs, attachs := runner.counts(); execs+attachs != 0 {
			t.Errorf("adoption ran %d execs and %d attaches, want none", execs, attachs)
		}
	})

	t.Run("with ports", func(t *testing.T) {
		inst := setUp(t, "g2", []uint16{8080})
		defer h.FilesHook().Teardown(ctx, logger, "g2")
		if len(inst.ProxyPorts) != 1 || inst.ProxyAdminPort == 0 {
			t.Errorf("proxy ports %v, admin %d; want one and an admin port", inst.ProxyPorts, inst.ProxyAdminPort)
		}
		if inst.MemoryOverheadMB != 32 {
			t.Errorf("memory overhead %d MB, want 32", inst.MemoryOverheadMB)
		}
		if len(inst.Mounts) != 2 {
			t.Errorf("mounts %v, want the config dir and the binary", inst.Mounts)
		}
		if _, err := os.Stat(filepath.Join(h.dir("g2"), proxyconfig.BootstrapFile)); err != nil {
			t.Errorf("proxy bootstrap of g2: %v", err)
		}
		if execs, _ := runner.counts(); execs != 1 {
			t.Errorf("%d proxy processes started, want 1", execs)
		}
	})
}

// TestRotationOfAnEarlierProxyWithoutPorts: an instance without ports that
// an earlier agent started with a proxy (every instance had one) keeps its
// proxy files until it ends. After an agent restart its rotations must be
// delivered, not refused as "not restored yet" until the certificate
// expires and the instance is failed.
func TestRotationOfAnEarlierProxyWithoutPorts(t *testing.T) {
	h, runner, caPEM, keyPEM := newTestHook(t)
	logger := lagertest.NewTestLogger("test")
	ctx := context.Background()
	// The files an earlier agent wrote for g1, which has no ports.
	cfg := proxyconfig.DefaultConfig()
	cfg.NodeID = "g1"
	if err := os.MkdirAll(h.dir("g1"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := proxyconfig.Write(h.dir("g1"), cfg, nil, 61001, caPEM, keyPEM, "07"); err != nil {
		t.Fatal(err)
	}

	inst := &containerstore.Instance{GUID: "g1", InternalIP: "127.0.0.1", ExternalIP: "127.0.0.1",
		Credentials: &executor.CredentialInfo{Serial: "07"}}
	files := h.FilesHook()
	if err := (containerstore.Pipeline{Proxy: files}).Restore(ctx, logger, inst); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if err := files.(containerstore.Starter).Adopt(ctx, logger, inst); err != nil {
		t.Fatalf("adopt: %v", err)
	}
	if execs, attachs := runner.counts(); execs+attachs != 0 {
		t.Errorf("adoption ran %d execs and %d attaches, want none (no ports, no proxy)", execs, attachs)
	}
	if err := h.CredentialsRotated(logger, "g1", credmanager.Credential{Serial: "08", CertPEM: caPEM, KeyPEM: keyPEM}); err != nil {
		t.Errorf("rotation of g1: %v, want it delivered", err)
	}
	if err := files.Teardown(ctx, logger, "g1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h.dir("g1")); !os.IsNotExist(err) {
		t.Errorf("proxy files of g1 after teardown: %v, want none", err)
	}
}
