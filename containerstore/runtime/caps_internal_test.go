package runtime

import (
	"context"
	"testing"

	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func specWithCaps() *oci.Spec {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_SETUID"}
	return &oci.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
		Bounding: caps, Effective: caps, Permitted: caps, Inheritable: caps, Ambient: caps}}}
}

// Issue 13 item 1: a non-root app had the container's capabilities
// effective (DAC_OVERRIDE read any file in the container, SETUID gave root).
func TestANonRootProcessHasNoCapabilities(t *testing.T) {
	s := specWithCaps()
	if err := withoutCapabilitiesUnlessRoot(2000)(context.Background(), nil, nil, s); err != nil {
		t.Fatal(err)
	}
	c := s.Process.Capabilities
	if len(c.Effective)+len(c.Permitted)+len(c.Inheritable)+len(c.Ambient) != 0 {
		t.Errorf("uid 2000 keeps capabilities: %+v", c)
	}
	if len(c.Bounding) != 3 {
		t.Errorf("bounding set changed: %v", c.Bounding)
	}
}

func TestARootProcessKeepsTheContainersCapabilities(t *testing.T) {
	s := specWithCaps()
	if err := withoutCapabilitiesUnlessRoot(0)(context.Background(), nil, nil, s); err != nil {
		t.Fatal(err)
	}
	if len(s.Process.Capabilities.Effective) != 3 {
		t.Errorf("uid 0 lost its capabilities: %+v", s.Process.Capabilities)
	}
}

func TestWithNoFileReplacesTheContainersLimit(t *testing.T) {
	got := withNoFile([]specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}, {Type: "RLIMIT_CORE"}}, 65536)
	if len(got) != 2 || got[0].Type != "RLIMIT_CORE" || got[1] != (specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: 65536, Soft: 65536}) {
		t.Errorf("got %+v", got)
	}
}
