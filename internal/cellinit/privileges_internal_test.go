package cellinit

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func writeTask(t *testing.T, dir, tid, status string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, tid), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, tid, "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBoundingSetsIsTheUnionOfTheThreads(t *testing.T) {
	dir := t.TempDir()
	writeTask(t, dir, "10", "Name:\tcellinit\nCapInh:\t0000000000000000\nCapBnd:\t00000000a80425fb\nNoNewPrivs:\t0\n")
	writeTask(t, dir, "11", "Name:\tcellinit\nCapBnd:\t0000000000000000\n") // a narrowed thread
	writeTask(t, dir, "12", "Name:\tcellinit\nCapBnd:\t0000010000000000\n")
	if got, want := boundingSets(dir), uint64(0xa80425fb|1<<40); got != want {
		t.Errorf("got %x, want %x", got, want)
	}
}

func TestBoundingSetsAnswersEveryBitWhenAThreadCannotBeRead(t *testing.T) {
	for name, status := range map[string]string{
		"no CapBnd line": "Name:\tcellinit\nCapEff:\t0000000000000000\n",
		"not hex":        "CapBnd:\tzz\n",
	} {
		dir := t.TempDir()
		writeTask(t, dir, "10", "CapBnd:\t0000000000000001\n")
		writeTask(t, dir, "11", status)
		if got := boundingSets(dir); got != ^uint64(0) {
			t.Errorf("%s: got %x, want every bit", name, got)
		}
	}
	if got := boundingSets(filepath.Join(t.TempDir(), "missing")); got != ^uint64(0) {
		t.Errorf("no task dir: got %x, want every bit", got)
	}
}

func TestBoundingSetsOfThisProcessHoldsItsOwn(t *testing.T) {
	b, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		t.Skip(err)
	}
	own, ok := statusMask(b, "CapBnd:")
	if !ok {
		t.Fatal("no CapBnd in /proc/thread-self/status")
	}
	if got := boundingSets("/proc/self/task"); got&own != own || got == ^uint64(0) {
		t.Errorf("got %x, want a set holding this thread's %x", got, own)
	}
}

// The names the agent puts in the container's spec are the capabilities
// restrictSelf keeps: a name missing there would leave the init without
// a capability it needs; one too many, a drop on all its threads.
func TestKeptCapabilityNamesAreKeptCapabilities(t *testing.T) {
	byName := map[string]uintptr{"CAP_KILL": unix.CAP_KILL, "CAP_SETGID": unix.CAP_SETGID, "CAP_SETUID": unix.CAP_SETUID, "CAP_SETPCAP": unix.CAP_SETPCAP}
	var m uint64
	for _, name := range KeptCapabilityNames {
		c, ok := byName[name]
		if !ok {
			t.Fatalf("%s is not one of the init's capabilities", name)
		}
		m |= 1 << c
	}
	if m != KeptMask() || len(KeptCapabilityNames) != len(KeptCapabilities) {
		t.Errorf("names %v make %#x, KeptCapabilities %#x", KeptCapabilityNames, m, KeptMask())
	}
}
