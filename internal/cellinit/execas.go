package cellinit

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ExecAsArg as argv[1] makes cellinit the helper that changes its
// credentials and execs a target (ExecAs): the init starts a target
// through it only where startDirect cannot give the same result (see
// supervisor.spawn).
const ExecAsArg = "exec-as"

// errFD is the helper's descriptor for a start error: close-on-exec, so
// the init reads EOF when the exec succeeded and the reason otherwise.
const errFD = 3

// execAs is one target of the helper.
type execAs struct {
	cred     *Cred
	nofile   Limit
	dropCaps bool
	home     bool
	dir      string
	argv     []string
	// env is the target's environment; nil passes the init's (the app's).
	env []string
	// envFD, when above 2, is the descriptor holding the environment for
	// cellinit-exec (-env-fd; cellinit exec-as has no such flag).
	envFD int
}

func (e execAs) args(self string) []string {
	a := []string{self, ExecAsArg}
	if e.cred != nil {
		a = append(a, "-user", e.cred.String())
	}
	if e.nofile != (Limit{}) {
		a = append(a, "-nofile", e.nofile.String())
	}
	if e.dropCaps {
		a = append(a, "-drop-caps")
	}
	if e.home {
		a = append(a, "-home")
	}
	if e.dir != "" {
		a = append(a, "-dir", e.dir)
	}
	if e.envFD > 2 {
		a = append(a, "-env-fd", strconv.Itoa(e.envFD))
	}
	return append(append(a, "--"), e.argv...)
}

// ExecAs is the helper (args after ExecAsArg). On one locked OS thread it
// sets the file limit, no_new_privs, empties the bounding set if asked,
// drops to the user (setgroups(0), setgid, setuid: a non-root user then
// holds no capability, as runc leaves a non-root process), clears the
// remaining capabilities of a non-root or capability-less target, and
// execs it with the environment it was given. It returns only on error,
// which it also writes to errFD.
func ExecAs(args []string) error {
	err := execAsLocked(args)
	f := os.NewFile(errFD, "cellinit-error")
	if f != nil {
		_, _ = io.WriteString(f, err.Error())
	}
	return err
}

func execAsLocked(args []string) error {
	// Capability sets and the bounding set are per thread, and exec keeps
	// the calling thread's: everything happens on this one.
	runtime.LockOSThread()
	var e execAs
	fs := flag.NewFlagSet(ExecAsArg, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Func("user", "uid:gid", credFlag(&e.cred))
	fs.Func("nofile", "soft:hard", func(s string) error {
		soft, hard, err := pair(s)
		e.nofile = Limit{soft, hard}
		return err
	})
	fs.BoolVar(&e.dropCaps, "drop-caps", false, "")
	fs.BoolVar(&e.home, "home", false, "")
	fs.StringVar(&e.dir, "dir", "", "")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("exec-as: %w", err)
	}
	e.argv = fs.Args()
	if len(e.argv) == 0 {
		return errors.New("exec-as: no command")
	}
	if e.nofile != (Limit{}) {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: e.nofile.Soft, Max: e.nofile.Hard}); err != nil {
			return fmt.Errorf("set file limit %s: %w", e.nofile, err)
		}
	}
	if e.home {
		uid := uint32(os.Getuid())
		if e.cred != nil {
			uid = e.cred.UID
		}
		if err := os.Setenv("HOME", homeOf("/etc/passwd", uid)); err != nil {
			return err
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	if e.dropCaps {
		if err := dropBounding(); err != nil {
			return err
		}
	}
	if e.cred != nil {
		if err := threadSetCred(*e.cred); err != nil {
			return err
		}
	}
	if e.dropCaps || os.Getuid() != 0 {
		// setuid away from 0 empties the permitted and effective sets
		// but keeps the inheritable one; this empties them all (and the
		// ambient set with them).
		var none [2]unix.CapUserData // version 3: two 32-bit halves
		if err := unix.Capset(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &none[0]); err != nil {
			return fmt.Errorf("clear capabilities: %w", err)
		}
	}
	if e.dir != "" {
		if err := os.Chdir(e.dir); err != nil {
			return err
		}
	}
	path, err := exec.LookPath(e.argv[0])
	if err != nil {
		return fmt.Errorf("start %s: %w", e.argv[0], err)
	}
	unix.CloseOnExec(errFD)
	if err := unix.Exec(path, e.argv, os.Environ()); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}

// threadSetCred drops the calling thread to cred: no supplementary group,
// then the group, then the user (real, effective and saved). These are
// the raw system calls, which change this thread only, where
// syscall.Setgroups, Setgid and Setuid change every thread of the process
// (AllThreadsSyscall: a signal to each and the caller spinning until all
// answered, about a third of the helper's CPU at a start). The helper
// execs from this thread, and exec gives the new program this thread's
// credentials and ends the others; should the exec fail, the helper
// exits.
func threadSetCred(cred Cred) error {
	if _, _, errno := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); errno != 0 {
		return fmt.Errorf("setgroups: %w", errno)
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(cred.GID), uintptr(cred.GID), uintptr(cred.GID)); errno != 0 {
		return fmt.Errorf("setgid %d: %w", cred.GID, errno)
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(cred.UID), uintptr(cred.UID), uintptr(cred.UID)); errno != 0 {
		return fmt.Errorf("setuid %d: %w", cred.UID, errno)
	}
	return nil
}

// dropBounding empties this thread's bounding set (needs CAP_SETPCAP).
func dropBounding() error {
	for c := 0; c < 64; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			return nil // past the kernel's last capability
		}
		if err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

// homeOf is runc's HOME for uid: the home of its first /etc/passwd entry,
// "/" without one. The file is the container's own, read as the init:
// at most 1 MB of it.
func homeOf(passwd string, uid uint32) string {
	f, err := os.Open(passwd)
	if err != nil {
		return "/"
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	want := strconv.FormatUint(uint64(uid), 10)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 6 && fields[2] == want {
			return fields[5]
		}
	}
	return "/"
}
