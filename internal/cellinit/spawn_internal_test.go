package cellinit

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDirectLimitNeverLeavesALaterStartAboveTheInitsHardLimit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		l         Limit
		later     bool
		laterHard uint64
		want      bool
	}{
		{"no limit: the init's original, untouched", Limit{}, true, 0, true},
		{"no later start", Limit{1024, 1024}, false, 0, true},
		{"the proxy's limit is within the app's", Limit{1024, 65536}, true, 4096, true},
		{"the proxy's limit is the app's", Limit{4096, 4096}, true, 4096, true},
		{"the proxy needs more than the app (the container's 1024)", Limit{1024, 1024}, true, 65536, false},
		{"the proxy keeps the init's original limit", Limit{1024, 65536}, true, 0, false},
		{"too few files left to the init", Limit{8, 8}, false, 0, false},
	} {
		if got := directLimit(tc.l, tc.later, tc.laterHard); got != tc.want {
			t.Errorf("%s: directLimit(%s, %v, %d) = %v", tc.name, tc.l, tc.later, tc.laterHard, got)
		}
	}
}

func TestLookPathSearchesTheTargetsPathAsItsUser(t *testing.T) {
	dir := t.TempDir()
	ownerOnly, forAll := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for d, mode := range map[string]os.FileMode{ownerOnly: 0o700, forAll: 0o755, filepath.Join(dir, "c"): 0o644} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "prog"), nil, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(d, "prog"), mode); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"PATH=" + filepath.Join(dir, "c") + ":" + ownerOnly + ":" + forAll, "PATH=/ignored"}
	owner := uint32(os.Getuid())
	if got, err := lookPath("prog", env, owner, 1); err != nil || got != filepath.Join(ownerOnly, "prog") {
		t.Errorf("owner: %q, %v", got, err)
	}
	// Neither the owner nor root: the owner's bit does not count.
	other := owner + 1
	if owner == 0 {
		other = 65534
	}
	if got, err := lookPath("prog", env, other, 65534); err != nil || got != filepath.Join(forAll, "prog") {
		t.Errorf("another user: %q, %v", got, err)
	}
	if _, err := lookPath("prog", []string{"PATH=" + filepath.Join(dir, "c")}, owner, 1); err == nil || !strings.Contains(err.Error(), "not found in $PATH") {
		t.Errorf("no executable: %v", err)
	}
	if _, err := lookPath("prog", []string{"PATH=:" + forAll}, owner, 1); err != nil {
		t.Errorf("empty element then an absolute one: %v", err)
	}
	if got, err := lookPath("./x/y", nil, owner, 1); err != nil || got != "./x/y" {
		t.Errorf("a name with a slash is execve's: %q, %v", got, err)
	}
}

func TestWithEnvReplacesTheFirstValueAsSetenvDoes(t *testing.T) {
	got := withEnv([]string{"A=1", "HOME=/x", "B=2", "HOME=/y"}, "HOME", "/home/vcap")
	if want := []string{"A=1", "HOME=/home/vcap", "B=2"}; !slices.Equal(got, want) {
		t.Errorf("%q, want %q", got, want)
	}
	got = withEnv([]string{"A=1"}, "HOME", "/")
	if want := []string{"A=1", "HOME=/"}; !slices.Equal(got, want) {
		t.Errorf("%q, want %q", got, want)
	}
}
