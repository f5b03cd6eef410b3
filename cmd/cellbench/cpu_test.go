package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestReadPerfSamples(t *testing.T) {
	in := "           envoy 23913 1796285979.540924: \n" +
		"         swapper     0 1796285979.5: \n\n" +
		"  runc:[2:INIT] 77 12.000000001:\n" +
		" name with spaces 5 3.25:\n"
	got, err := readPerfSamples(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []perfSample{
		{"envoy", 23913, 1796285979540924000},
		{"swapper", 0, 1796285979500000000},
		{"runc:[2:INIT]", 77, 12000000001},
		{"name with spaces", 5, 3250000000},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d samples, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("sample %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"envoy 1796285979.540924:", "envoy x 1.5:", "envoy 3 abc:"} {
		if _, err := readPerfSamples(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestSampleKind(t *testing.T) {
	for comm, want := range map[string]string{
		"runc:[2:INIT]":       "runc init",
		"runc":                "runc",
		"kworker/u4:2-events": "kworker",
		"envoy":               "cellproxy",
		"server":              "app (demo-app)",
		"cellagent":           "cellagent",
	} {
		if got := sampleKind(comm, 10); got != want {
			t.Errorf("%s: got %q, want %q", comm, got, want)
		}
	}
	if got := sampleKind("swapper", 0); got != "idle" {
		t.Errorf("pid 0: got %q", got)
	}
}

func TestSplitCPUCountsOnlyInsideTheWindowsPerStart(t *testing.T) {
	// Two windows of 1 s, 2 starts each; 100 Hz: a sample is 10 ms.
	windows := [][2]int64{{1e9, 2e9}, {5e9, 6e9}}
	var samples []perfSample
	add := func(comm string, pid int, at int64, n int) {
		for i := 0; i < n; i++ {
			samples = append(samples, perfSample{comm, pid, at})
		}
	}
	add("runc", 9, 1.5e9, 8)         // inside the first
	add("runc", 9, 5e9, 4)           // on the second's edge: inside
	add("cellagent", 3, 3e9, 50)     // between the windows: not counted
	add("cellagent", 3, 5.5e9, 2)    // inside
	add("swapper", 0, 1.2e9, 6)      // idle inside
	add("cellagent", 3, 6.0001e9, 7) // just after: not counted
	s := splitCPU(samples, windows, 2, 100)
	if s.starts != 4 || s.seconds != 2 {
		t.Fatalf("starts %d seconds %v, want 4 and 2", s.starts, s.seconds)
	}
	// runc: 12 samples = 120 ms over 4 starts; cellagent: 2 = 20 ms / 4.
	if got := s.byKind["runc"]; got != 30 {
		t.Errorf("runc %v ms/start, want 30", got)
	}
	if got := s.byKind["cellagent"]; got != 5 {
		t.Errorf("cellagent %v ms/start, want 5", got)
	}
	if s.busy != 35 {
		t.Errorf("busy %v ms/start, want 35", s.busy)
	}
	if want := 14.0 / 20; s.util != want {
		t.Errorf("util %v, want %v", s.util, want)
	}
	var out bytes.Buffer
	printCPUSplit(&out, s, s)
	if !strings.Contains(out.String(), "1.00x") || !strings.Contains(out.String(), "runc") {
		t.Errorf("table:\n%s", out.String())
	}
}
