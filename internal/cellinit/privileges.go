package cellinit

import (
	"golang.org/x/sys/unix"
)

// KeptCapabilities are the capabilities the init keeps once the app runs:
// a proxy (re)start changes users (SETUID, SETGID) and empties the proxy's
// bounding set (SETPCAP); forwarding a signal to the app or killing the
// proxy crosses users (KILL). Nothing else of the container's set is
// needed: the state file and the proxy's log are in a directory the init
// owns, and the app started before the drop.
var KeptCapabilities = []uintptr{unix.CAP_KILL, unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETPCAP}

// KeptCapabilityNames are KeptCapabilities as the OCI runtime spec names
// them: the agent gives the init no more than these when the app does
// not run as root (containerstore/runtime withInit).
var KeptCapabilityNames = []string{"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP"}

// KeptMask is KeptCapabilities as a capability bit mask (/proc's CapEff).
func KeptMask() uint64 {
	var m uint64
	for _, c := range KeptCapabilities {
		m |= 1 << c
	}
	return m
}
