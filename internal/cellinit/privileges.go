package cellinit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

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

// LookupCapabilityNames are capabilities the init uses only before the
// app runs: it looks the app's executable up in the app's PATH as root
// (startDirect's lookPath), where a directory the app's user may search
// (its own home, mode 0750) lets root in only with these. The agent
// leaves them to the init where the container grants them; restrictSelf
// drops them with everything else not kept.
var LookupCapabilityNames = []string{"CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH"}

// KeptMask is KeptCapabilities as a capability bit mask (/proc's CapEff).
func KeptMask() uint64 {
	var m uint64
	for _, c := range KeptCapabilities {
		m |= 1 << c
	}
	return m
}

// restrictSelf leaves a root init KeptCapabilities only (those the
// container granted it): in its bounding,
// permitted and effective sets, with empty inheritable and ambient sets.
// Capabilities are per thread, so every step runs on all of the
// process's threads (AllThreadsSyscall: the init is built without cgo);
// threads started later copy a restricted one. A non-root init holds
// nothing to drop.
func restrictSelf() error {
	if os.Getuid() != 0 {
		return nil
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var cur [2]unix.CapUserData
	if err := unix.Capget(&hdr, &cur[0]); err != nil {
		return fmt.Errorf("read the init's capabilities: %w", err)
	}
	// A capability the container does not grant stays out.
	keep := KeptMask() & (uint64(cur[1].Permitted)<<32 | uint64(cur[0].Permitted))
	// Each drop stops every thread (a signal to each, the caller spinning
	// until all answered): about a third of the init's CPU at start when
	// it asked all 41 of the kernel's capabilities. Only those some thread
	// still holds need dropping, runc's default set leaves about 10.
	held := boundingSets("/proc/self/task")
	for c := uintptr(0); c < 64; c++ {
		if keep&(1<<c) != 0 || held&(1<<c) == 0 {
			continue
		}
		_, _, errno := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, c, 0)
		if errno == unix.EINVAL {
			break // past the kernel's last capability
		}
		if errno != 0 {
			return fmt.Errorf("drop capability %d from the init's bounding set: %w", c, errno)
		}
	}
	// The capset's empty inheritable set empties the ambient one with it
	// (the kernel keeps no ambient capability that is not both permitted
	// and inheritable): no all-threads call of its own for that.
	hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(keep), Permitted: uint32(keep)},
		{Effective: uint32(keep >> 32), Permitted: uint32(keep >> 32)},
	}
	if _, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); errno != 0 {
		return fmt.Errorf("restrict the init's capabilities: %w", errno)
	}
	return nil
}

// boundingSets answers the union of the bounding sets of the threads
// listed under taskDir (/proc/self/task): no thread gains a bounding
// capability, so one none of them holds is held by no thread started
// later either. Every bit when a thread's status cannot be read, so that
// restrictSelf then drops every capability as if it had not looked.
func boundingSets(taskDir string) uint64 {
	tasks, err := os.ReadDir(taskDir)
	if err != nil || len(tasks) == 0 {
		return ^uint64(0)
	}
	var union uint64
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(taskDir, t.Name(), "status"))
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread ended
		}
		set, ok := statusMask(b, "CapBnd:")
		if err != nil || !ok {
			return ^uint64(0)
		}
		union |= set
	}
	return union
}

// statusMask reads a hexadecimal capability mask line of /proc's status.
func statusMask(status []byte, key string) (uint64, bool) {
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, key); ok {
			v, err := strconv.ParseUint(strings.TrimSpace(rest), 16, 64)
			return v, err == nil
		}
	}
	return 0, false
}
