package proxyhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"code.cloudfoundry.org/lager/v3/lagertest"
	"sigs.k8s.io/yaml"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/credmanager"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/proxyconfig"
)

// bootstrapDoc decodes a bootstrap (or an SDS file) as Envoy does: a YAML
// document (the agent writes them as JSON, which is YAML too).
func bootstrapDoc(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, b)
	}
	return doc
}

// holds says whether key holds want (compared as printed) anywhere in v.
func holds(v any, key string, want any) bool {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if k == key && fmt.Sprint(x) == fmt.Sprint(want) || holds(x, key, want) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if holds(x, key, want) {
				return true
			}
		}
	}
	return false
}

// setupWith runs the files hook's Setup for one instance with hostBinary as
// the proxy and answers the mounts it added and the proxy's process spec.
func setupWith(t *testing.T, hostBinary string, pc proxyconfig.Config, issue ...func(string, []string, []string) (credmanager.Credential, error)) ([]containerstore.Mount, containerstore.ProcessSpec, string) {
	t.Helper()
	cert, caPEM := selfSigned(t, "g1")
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	cfg := Config{HostBinary: hostBinary, Proxy: pc, DataDir: dataDir, CACertPEM: caPEM, User: testProxyUser()}
	if len(issue) > 0 {
		cfg.IssueC2C = issue[0]
	}
	h, err := New(lagertest.NewTestLogger("layout"), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	inst := &containerstore.Instance{GUID: "g1", InternalIP: "10.255.0.7",
		Request: executor.RunRequest{Ports: []uint16{8080},
			InternalRoutes:        []executor.InternalRoute{{Hostname: "app.apps.internal"}},
			CertificateProperties: &executor.CertificateProperties{OrganizationalUnit: []string{"app:a1"}}},
		ProxyPorts: map[uint16]uint16{8080: 61001}, ProxyAdminPort: 61002,
		CertPEM: caPEM, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		Credentials: &executor.CredentialInfo{Serial: "7"}}
	f := filesHook{h}
	res, err := f.Setup(context.Background(), lagertest.NewTestLogger("layout"), *inst)
	if err != nil {
		t.Fatal(err)
	}
	return res.Mounts, f.spec(inst), h.dir("g1")
}

// Diego (executor depot/transformer/transformer.go and
// proxy_config_handler.go) mounts the rep's container_proxy_path directory
// at /etc/cf-assets/envoy and the per-container config directory at
// /etc/cf-assets/envoy_config, and runs
// /etc/cf-assets/envoy/envoy -c /etc/cf-assets/envoy_config/envoy.yaml
// --drain-time-s <drain> --log-level critical.
func TestEnvoyRunsWithDiegosLayoutAndCommandLine(t *testing.T) {
	envoyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(envoyDir, "envoy"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pc := proxyconfig.DefaultConfig()
	pc.LogLevel = proxyconfig.EnvoyLogLevel
	mounts, spec, configDir := setupWith(t, envoyDir, pc)

	wantMounts := []containerstore.Mount{
		{Source: configDir, Destination: "/etc/cf-assets/envoy_config", ReadOnly: true},
		{Source: envoyDir, Destination: "/etc/cf-assets/envoy", ReadOnly: true},
	}
	if !reflect.DeepEqual(mounts, wantMounts) {
		t.Errorf("mounts = %+v, want %+v", mounts, wantMounts)
	}
	argv := append([]string{spec.Path}, spec.Args...)
	want := "/etc/cf-assets/envoy/envoy -c /etc/cf-assets/envoy_config/envoy.yaml --drain-time-s 900 --log-level critical"
	if got := strings.Join(argv, " "); got != want {
		t.Errorf("command line = %q, want Diego's %q", got, want)
	}
	b, err := os.ReadFile(filepath.Join(configDir, proxyconfig.BootstrapFile))
	if err != nil {
		t.Fatal(err)
	}
	doc := bootstrapDoc(t, b)
	if sc, _ := doc["stats_config"].(map[string]any); sc == nil || !holds(sc["stats_matcher"], "reject_all", true) {
		t.Errorf("bootstrap keeps stats: %s", b)
	}
}

// The bundled cellproxy is one file: it is mounted at /etc/cf-assets/envoy
// itself (the mount point rootfses made for cellagent have), and keeps its
// info logs.
func TestASingleProxyExecutableIsMountedAtTheAssetsPath(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "cellproxy")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	mounts, spec, _ := setupWith(t, exe, proxyconfig.DefaultConfig())
	if m := mounts[len(mounts)-1]; m != (containerstore.Mount{Source: exe, Destination: "/etc/cf-assets/envoy", ReadOnly: true}) {
		t.Errorf("binary mount = %+v", m)
	}
	if got := strings.Join(append([]string{spec.Path}, spec.Args...), " "); got != "/etc/cf-assets/envoy -c /etc/cf-assets/envoy_config/envoy.yaml --drain-time-s 900" {
		t.Errorf("command line = %q", got)
	}
}

func TestAProxyDirectoryWithoutEnvoyIsRefused(t *testing.T) {
	_, err := New(lagertest.NewTestLogger("layout"), Config{HostBinary: t.TempDir(), Proxy: proxyconfig.DefaultConfig(), DataDir: t.TempDir(), User: testProxyUser()}, nil)
	if err == nil || !strings.Contains(err.Error(), `holds no file "envoy"`) {
		t.Fatalf("err = %v", err)
	}
}

// An instance with app port 8080 gets Diego's c2c listener on 61443, with a
// certificate issued for its internal routes.
func TestC2CListenerForPort8080(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "cellproxy")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var asked []string
	cert, _ := selfSigned(t, "g1")
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	issue := func(guid string, ous, hosts []string) (credmanager.Credential, error) {
		asked = append(append(append(asked, guid), ous...), hosts...)
		return credmanager.Credential{Serial: "c2c-1", CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
			KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})}, nil
	}
	_, _, dir := setupWith(t, exe, proxyconfig.DefaultConfig(), issue)
	if want := []string{"g1", "app:a1", "app.apps.internal"}; !reflect.DeepEqual(asked, want) {
		t.Errorf("IssueC2C asked for %v, want %v", asked, want)
	}
	b, err := os.ReadFile(filepath.Join(dir, proxyconfig.BootstrapFile))
	if err != nil {
		t.Fatal(err)
	}
	if doc := bootstrapDoc(t, b); !holds(doc, "port_value", 61443) || !holds(doc, "name", "c2c-cert-and-key") {
		t.Errorf("no c2c listener in the bootstrap: %s", b)
	}
	if c, err := os.ReadFile(filepath.Join(dir, proxyconfig.C2CCertAndKeyFile)); err != nil || bootstrapDoc(t, c)["version_info"] != "c2c-1" {
		t.Errorf("c2c secret: %v %s", err, c)
	}
}
