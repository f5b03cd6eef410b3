package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

// fakeProc writes /proc/PID/{exe,status,smaps_rollup} under root.
func fakeProc(t *testing.T, root string, pid int, exe string, rssKB, anonKB, pssKB int) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
	status := fmt.Sprintf("Name:\tx\nVmRSS:\t%d kB\nRssAnon:\t%d kB\n", rssKB, anonKB)
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	rollup := fmt.Sprintf("00400000-7fff [rollup]\nRss:\t%d kB\nPss:\t%d kB\n", rssKB, pssKB)
	if err := os.WriteFile(filepath.Join(dir, "smaps_rollup"), []byte(rollup), 0o644); err != nil {
		t.Fatal(err)
	}
}

// With cellinit as the task's pid 1, density took cellinit for the app and
// the app and the proxy for two proxies ("1000 proxies" for 500 instances).
func TestClassifyByExecutable(t *testing.T) {
	root := t.TempDir()
	// With proxy.init: cellinit, the app and the proxy.
	fakeProc(t, root, 10, "/etc/cf-assets/cellinit", 1024, 512, 600)
	fakeProc(t, root, 11, "/app/server", 3072, 1024, 2048)
	fakeProc(t, root, 12, "/etc/cf-assets/envoy", 7168, 1536, 2048)
	// Without: the app first, the proxy from a mounted directory whose
	// host binary was replaced meanwhile.
	fakeProc(t, root, 20, "/home/vcap/app/bin/web", 2048, 1024, 1024)
	fakeProc(t, root, 21, "/etc/cf-assets/envoy/envoy (deleted)", 7168, 1024, 1536)

	got := classify(root, []int{10, 11, 12, 13}) // 13 exited
	want := containerProcs{kindInit: {10}, kindApp: {11}, kindProxy: {12}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("with cellinit: %v, want %v", got, want)
	}
	noInit := classify(root, []int{20, 21})
	if want := (containerProcs{kindApp: {20}, kindProxy: {21}}); !reflect.DeepEqual(noInit, want) {
		t.Fatalf("without cellinit: %v, want %v", noInit, want)
	}

	s := newMemorySample()
	s.add(root, got)
	s.add(root, noInit)
	proxy, app, init := s.of(kindProxy), s.of(kindApp), s.of(kindInit)
	if proxy.Count != 2 || app.Count != 2 || init.Count != 1 {
		t.Fatalf("counts proxy %d app %d cellinit %d, want 2 2 1", proxy.Count, app.Count, init.Count)
	}
	if proxy.PssMax != 2 || proxy.RSSMax != 7 || proxy.AnonMax != 1.5 || proxy.PssMed != 1.75 {
		t.Fatalf("proxy %+v", proxy)
	}
	if app.RSSMed != 2.5 {
		t.Fatalf("app %+v", app)
	}
	// The proxy's cost to an instance: the proxy and cellinit together.
	if w := 2 + 600.0/1024; maxOf(s.overPss) != w {
		t.Fatalf("proxy + cellinit Pss max %v, want %v", maxOf(s.overPss), w)
	}
	if maxOf(s.overAnon) != 2 {
		t.Fatalf("proxy + cellinit RssAnon max %v, want 2", maxOf(s.overAnon))
	}
}
