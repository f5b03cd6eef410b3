package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadConfigReportsAnUnreadableFileAlone: a file that cannot be read or
// parsed says nothing of its proxy, so the proxy binary is not checked
// against the defaults (the file may well disable the proxy); a file that
// decodes has its proxy binary checked beside its other problems.
func TestLoadConfigReportsAnUnreadableFileAlone(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	missingProxy := filepath.Join(dir, "no-cellproxy")
	for _, tc := range []struct {
		name, path string
		want       []string // one line each
	}{
		{"missing file", filepath.Join(dir, "missing.json"), []string{"no such file or directory"}},
		{"syntax error", write("syntax.json", `{"proxy": {"enabled": false}`), []string{"unexpected EOF"}},
		{"a file that decodes", write("ok.json", `{"zone": "", "proxy": {"binary": "`+missingProxy+`"}}`),
			[]string{"zone must not be empty", `proxy.binary "` + missingProxy + `": stat`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(tc.path)
			if err == nil {
				t.Fatalf("loadConfig(%s) = nil, want %q", tc.path, tc.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("loadConfig(%s) reported %d problems, want %d:\n%v", tc.path, len(lines), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, lines[i], w)
				}
			}
		})
	}
}
