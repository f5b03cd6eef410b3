package cellinit

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The names the agent puts in the container's spec are the capabilities
// the init keeps: a name missing there would leave the init without a
// capability it needs; one too many, a capability it does not.
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
