package cellinit

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// minOwnFiles is the least file limit the init leaves itself when it
// takes a child's limit for good (see directLimit): its own descriptors
// (pipes, the proxy's log, state files, health checks' sockets) stay
// far below it.
const minOwnFiles = 64

// directLimit answers whether the init can give a child the file limit l
// by taking it itself just before the start, the child's hard limit
// never rising above it afterwards (laterHard, the highest hard limit a
// later start needs; 0 for a later start that keeps the init's original
// limit). RLIMIT_NOFILE is per process and a fork copies it; the init
// cannot set it between fork and exec (os/exec and syscall.ForkExec have
// no hook there), and lowering its own hard limit is for good: raising it
// again needs CAP_SYS_RESOURCE, which the container does not grant. A
// zero l keeps the init's original limit (Go's saved one, which
// syscall.ForkExec restores in the child while the init never set its
// own).
func directLimit(l Limit, later bool, laterHard uint64) bool {
	switch {
	case l == (Limit{}):
		return true
	case l.Hard < minOwnFiles:
		return false
	case !later:
		return true
	default:
		return laterHard > 0 && laterHard <= l.Hard
	}
}

// canStartDirect answers whether e can start from a thread of the init's
// (startDirect) rather than through the exec-as helper, limit aside
// (directLimit): the child changes its user in syscall.ForkExec, which
// leaves a non-root user no capability only by the kernel's setuid rule
// (a root uid giving way to non-root ones empties the permitted,
// effective and ambient sets) and only without securebits that suspend
// it; and a non-root init cannot change users without capabilities it
// would then have to clear after setuid, which only the helper can do.
func canStartDirect(e execAs, secureBits int) bool {
	return secureBits == 0 && (e.cred == nil || os.Getuid() == 0)
}

// secureBits answers the init's securebits (SECBIT_KEEP_CAPS,
// SECBIT_NO_SETUID_FIXUP, ...; runc leaves none), -1 if unreadable.
func secureBits() int {
	b, err := unix.PrctlRetInt(unix.PR_GET_SECUREBITS, 0, 0, 0, 0)
	if err != nil {
		return -1
	}
	return b
}

// startDirect starts e with files as its descriptors 0, 1, 2 without the
// exec-as helper, to the same effect:
//
//   - the file limit: the init takes e's for good (directLimit says
//     when it may), then the child inherits it;
//   - no_new_privs, the emptied bounding set (dropCaps), the inheritable
//     and ambient sets: per thread, and a clone copies its caller's. A
//     goroutine locked to an OS thread sets them there and starts the
//     child from it, and returns without unlocking: the Go runtime then
//     ends the thread rather than run other goroutines on it. The main
//     thread, which cannot end, it would park for good, still narrowed:
//     cmd/cellinit locks its main goroutine there, so this goroutine
//     never runs on it;
//   - the user: syscall.ForkExec's Credential (setgroups(0), setgid,
//     setuid in the child). The thread keeps its permitted and effective
//     sets, which the child needs for that; a non-root user loses them,
//     and the ambient set, at setuid, and exec grants nothing without an
//     inheritable or ambient set (no_new_privs caps a file's
//     capabilities at none). Without a user change (cred nil, a non-root
//     init) the thread clears them itself;
//   - HOME, the working directory (chdir as the user, after setuid) and
//     the executable's lookup in the target's PATH.
//
// Should the app's thread still exist (or be parked) when restrictSelf
// runs, each of restrictSelf's all-threads system calls answers there as
// on every other thread, as the runtime requires: the thread kept its
// permitted and effective sets, and restrictSelf asks an empty
// inheritable set and only bounding drops. The proxy starts after it.
func startDirect(e execAs, files []uintptr) (int, error) {
	if e.nofile != (Limit{}) {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: e.nofile.Soft, Max: e.nofile.Hard}); err != nil {
			return 0, fmt.Errorf("set file limit %s: %w", e.nofile, err)
		}
		// The child has its limit at fork; the init keeps the whole of
		// the hard one for its own descriptors.
		defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: e.nofile.Hard, Max: e.nofile.Hard})
	}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	if e.cred != nil {
		uid, gid = e.cred.UID, e.cred.GID
	}
	env := e.env
	if env == nil {
		env = os.Environ()
	}
	if e.home {
		env = withEnv(env, "HOME", homeOf("/etc/passwd", uid))
	}
	path, err := lookPath(e.argv[0], env, uid, gid)
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", e.argv[0], err)
	}
	attr := &syscall.ProcAttr{Dir: e.dir, Env: env, Files: files, Sys: &syscall.SysProcAttr{}}
	if e.cred != nil {
		attr.Sys.Credential = &syscall.Credential{Uid: e.cred.UID, Gid: e.cred.GID, Groups: []uint32{}}
	}
	type result struct {
		pid int
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: see above.
		runtime.LockOSThread()
		if err := narrowThread(e.dropCaps, uid != 0, e.cred == nil); err != nil {
			done <- result{0, err}
			return
		}
		pid, err := syscall.ForkExec(path, e.argv, attr)
		if err != nil {
			err = fmt.Errorf("start %s: %w", path, err)
		}
		done <- result{pid, err}
	}()
	r := <-done
	return r.pid, r.err
}

// narrowThread prepares the calling (locked) thread for a child started
// from it: no_new_privs; with emptyBounding an empty bounding set; with
// emptyBounding or nonRoot an empty inheritable set, and so an empty
// ambient one (the kernel keeps no capability ambient that is not also
// inheritable); with noUserChange empty permitted and effective sets too
// (nothing in the child would empty them).
func narrowThread(emptyBounding, nonRoot, noUserChange bool) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	if emptyBounding {
		if err := dropBounding(); err != nil {
			return err
		}
	}
	if !emptyBounding && !nonRoot {
		return nil // a root target keeps the container's capabilities
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // version 3: two 32-bit halves
	if !noUserChange {
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			return fmt.Errorf("read capabilities: %w", err)
		}
		data[0].Inheritable, data[1].Inheritable = 0, 0
	}
	hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear capabilities: %w", err)
	}
	return nil
}

// lookPath finds file as execve's caller would in env's PATH (exec's
// LookPath reads the init's own PATH): a name with a slash is taken as it
// is (execve says what is wrong with it); the first regular file that
// uid:gid, with no supplementary group, may execute by its mode; never
// one relative to the working directory (exec.ErrDot).
func lookPath(file string, env []string, uid, gid uint32) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	for _, dir := range filepath.SplitList(getEnv(env, "PATH")) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		st, err := os.Stat(p)
		if err != nil || !executableBy(st, uid, gid) {
			continue
		}
		if !filepath.IsAbs(p) {
			return "", fmt.Errorf("%s: cannot run executable found relative to current directory", p)
		}
		return p, nil
	}
	return "", fmt.Errorf("%q: executable file not found in $PATH", file)
}

// executableBy answers whether st's mode lets uid:gid execute it: root
// any execute bit; otherwise the owner's, the group's or the others' bit,
// whichever applies.
func executableBy(st fs.FileInfo, uid, gid uint32) bool {
	m := st.Mode()
	if !m.IsRegular() {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case uid == 0:
		return m&0o111 != 0
	case !ok:
		return m&0o001 != 0
	case sys.Uid == uid:
		return m&0o100 != 0
	case sys.Gid == gid:
		return m&0o010 != 0
	default:
		return m&0o001 != 0
	}
}

// getEnv answers key's first value in env, as os.Getenv does.
func getEnv(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// withEnv answers env with key set to value, as os.Setenv leaves
// os.Environ: in the place of key's first value, later ones dropped.
func withEnv(env []string, key, value string) []string {
	out := make([]string, 0, len(env)+1)
	set := false
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		} else if !set {
			out, set = append(out, key+"="+value), true
		}
	}
	if !set {
		out = append(out, key+"="+value)
	}
	return out
}
