package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMain runs cellbench's main when the test binary is started as the
// command (see runMain).
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("CELLBENCH_RUN_MAIN"); ok {
		os.Args = append([]string{"cellbench"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runMain runs cellbench with args in a process of its own: its exit code
// and stderr.
func runMain(t *testing.T, args string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CELLBENCH_RUN_MAIN="+args)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stderr.String()
}

// TestStrayArguments: subcommands take flags only; a stray argument is a
// usage error (exit 2) before anything is read or started.
func TestStrayArguments(t *testing.T) {
	missing := t.TempDir() + "/missing.json"
	for _, tc := range []struct{ args, want string }{
		{"report -results " + missing + " BENCHMARKS.md", `cellbench report: unexpected argument "BENCHMARKS.md"` + "\nusage: cellbench report [flags]"},
		{"load -ca " + missing + " 10s", `cellbench load: unexpected argument "10s"`},
	} {
		code, stderr := runMain(t, tc.args)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("cellbench %s: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	// Without the stray argument the same command gets as far as the file.
	if code, stderr := runMain(t, "report -results "+missing); code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("cellbench report: exit %d, stderr %q; want 1 and the missing file", code, stderr)
	}
}

func TestParseSteps(t *testing.T) {
	for in, want := range map[string]string{"250": "[250]", "250,500": "[250 500]", " 100 , 200 ": "[100 200]"} {
		got, err := parseSteps(in)
		if err != nil || fmt.Sprint(got) != want {
			t.Errorf("parseSteps(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "500,250", "250,250", "x"} {
		if _, err := parseSteps(in); err == nil {
			t.Errorf("parseSteps(%q) took it", in)
		}
	}
}

func TestRestartsByN(t *testing.T) {
	runs := []RestartResults{{N: 250, AdoptedSeconds: 1}, {N: 250, AdoptedSeconds: 2}, {N: 500, AdoptedSeconds: 3}}
	got := restartsByN(runs)
	if len(got) != 2 || len(got[0]) != 2 || len(got[1]) != 1 || got[1][0].AdoptedSeconds != 3 {
		t.Errorf("restartsByN = %+v", got)
	}
}

// A round's wall time ends at its last routable start, not its last PUT.
func TestLastRoutable(t *testing.T) {
	t0 := time.Unix(1000, 0)
	starts := []time.Time{t0, t0.Add(10 * time.Millisecond), t0.Add(20 * time.Millisecond)}
	took := []time.Duration{500 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}
	if got, want := lastRoutable(starts, took), t0.Add(500*time.Millisecond); !got.Equal(want) {
		t.Fatalf("lastRoutable = %v, want %v", got, want)
	}
}
