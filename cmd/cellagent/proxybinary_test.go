package main

import (
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellagent/cellagent/config"
)

// dynamicProgram is a dynamically linked program of this machine, or ""
// when there is none.
func dynamicProgram() string {
	for _, p := range []string{"/bin/sh", "/usr/bin/env", "/bin/ls"} {
		p, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue
		}
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		defer f.Close()
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				return p
			}
		}
	}
	return ""
}

func TestCheckProxyBinary(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "envoy")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notExec := filepath.Join(dir, "envoy-0644")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgWith := func(kind, binary string, change func(*config.Config)) config.Config {
		c := config.DefaultConfig()
		c.Network.Mode = "bridge"
		c.Proxy.Enabled, c.Proxy.Kind, c.Proxy.Binary = true, kind, binary
		if change != nil {
			change(&c)
		}
		return c
	}
	for _, tc := range []struct {
		name    string
		cfg     config.Config
		wantErr []string
	}{
		{name: "envoy: an executable is enough", cfg: cfgWith("envoy", script, nil)},
		{name: "envoy: Diego's directory holding envoy", cfg: cfgWith("envoy", dir, nil)},
		{name: "envoy: a directory without envoy", cfg: cfgWith("envoy", t.TempDir(), nil), wantErr: []string{"envoy\": "}},
		{name: "envoy: not executable", cfg: cfgWith("envoy", notExec, nil), wantErr: []string{`proxy.binary "` + notExec + `": not executable`}},
		{name: "cellproxy: a script is not a static ELF", cfg: cfgWith("cellproxy", script, nil),
			wantErr: []string{"not an ELF executable", "CGO_ENABLED=0 go build -o bin/ ./cmd/cellproxy"}},
		{name: "cellproxy: missing", cfg: cfgWith("cellproxy", filepath.Join(dir, "nope"), nil),
			wantErr: []string{"no such file or directory", "CGO_ENABLED=0 go build"}},
		{name: "the bundled cellproxy next to the test binary is missing", cfg: cfgWith("cellproxy", "", nil),
			wantErr: []string{"the bundled cellproxy (proxy.binary unset)", "/cellproxy\""}},
		{name: "proxy disabled: nothing to check", cfg: cfgWith("cellproxy", filepath.Join(dir, "nope"), func(c *config.Config) { c.Proxy.Enabled = false })},
		{name: "host network mode runs no proxy", cfg: cfgWith("cellproxy", filepath.Join(dir, "nope"), func(c *config.Config) { c.Network.Mode = "host" })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkProxyBinary(tc.cfg)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("checkProxyBinary = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("checkProxyBinary = nil, want %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("checkProxyBinary = %v, want it to contain %q", err, w)
				}
			}
		})
	}

	t.Run("cellproxy: dynamically linked", func(t *testing.T) {
		p := dynamicProgram()
		if p == "" {
			t.Skip("no dynamically linked program on this machine")
		}
		err := checkProxyBinary(cfgWith("cellproxy", p, nil))
		if err == nil || !strings.Contains(err.Error(), "dynamically linked: needs the ELF interpreter") || !strings.Contains(err.Error(), "CGO_ENABLED=0 go build -o bin/ ./cmd/cellproxy") {
			t.Fatalf("checkProxyBinary(%s) = %v, want dynamically linked and how to build", p, err)
		}
		if err := checkProxyBinary(cfgWith("envoy", p, nil)); err != nil {
			t.Errorf("an Envoy may be dynamically linked: %v", err)
		}
	})
}
