package runtime_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cellagent/cellagent/containerstore/runtime"
)

// fakeProc writes /proc/PID/{cmdline,stat} for each process.
func fakeProc(t *testing.T, procs map[string]struct {
	ppid    string
	cmdline []string
}) string {
	t.Helper()
	dir := t.TempDir()
	for pid, p := range procs {
		d := filepath.Join(dir, pid)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := strings.Join(p.cmdline, "\x00") + "\x00"
		stat := pid + " (a (b) c) S " + p.ppid + " 1 1 0 -1\n" // comm with spaces and parentheses
		if err := os.WriteFile(filepath.Join(d, "cmdline"), []byte(cmd), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Not a process directory.
	if err := os.MkdirAll(filepath.Join(dir, "sys"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFindShimsPicksThisAgentsShimsWithTheirChildren(t *testing.T) {
	const sock = "/run/cellagent-containerd/containerd.sock"
	type proc = struct {
		ppid    string
		cmdline []string
	}
	dir := fakeProc(t, map[string]proc{
		"100": {"1", []string{"/usr/bin/containerd-shim-runc-v2", "-namespace", "cellagent", "-id", "k9-21", "-address", sock}},
		"101": {"100", []string{"/usr/bin/cellagent", "cellagent-logger", "/data/logs/k9-21/app.log"}},
		"200": {"1", []string{"containerd-shim-runc-v2", "-namespace=cellagent", "-id=web-0", "-address=" + sock}},
		"300": {"1", []string{"/usr/bin/containerd-shim-runc-v2", "-namespace", "other", "-id", "x", "-address", sock}},
		"400": {"1", []string{"/usr/bin/containerd-shim-runc-v2", "-namespace", "cellagent", "-id", "y", "-address", "/run/containerd/containerd.sock"}},
		"500": {"1", []string{"/usr/bin/containerd-shim-runc-v2-not", "-namespace", "cellagent", "-id", "z", "-address", sock}},
		"600": {"1", []string{"/usr/bin/containerd-shim-runc-v2", "-namespace", "cellagent", "-address", sock}}, // no id
	})
	got, err := runtime.FindShims(dir, "cellagent", sock)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]runtime.ShimProcess{}
	for _, s := range got {
		byID[s.ID] = s
	}
	want := map[string]runtime.ShimProcess{
		"k9-21": {PID: 100, Namespace: "cellagent", ID: "k9-21", Address: sock, Children: []int{101}},
		"web-0": {PID: 200, Namespace: "cellagent", ID: "web-0", Address: sock},
	}
	if !reflect.DeepEqual(byID, want) {
		t.Fatalf("FindShims = %+v, want %+v", byID, want)
	}
}
