package testagent

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// InitPath is cellinit's path in a container run with proxy.init (the
// proxy hook's InitPath; tests do not import the hook).
const InitPath = "/etc/cf-assets/cellinit"

// Proc is one process of a container's task, read from the host's /proc.
type Proc struct {
	Pid, PPid int
	UID       string // real uid
	Argv      []string
	Status    string // /proc/PID/status
}

// TaskProcs answers the processes of guid's task (ctr tasks ps) and the
// pid of its first process (ctr tasks ls). A process that exited between
// the two reads is left out.
func (a *Agent) TaskProcs(guid string) (first int, procs []Proc, err error) {
	ns := a.Config.Containerd.Namespace
	out, err := exec.Command("ctr", "--address", Socket(), "-n", ns, "tasks", "ls").CombinedOutput()
	if err != nil {
		return 0, nil, fmt.Errorf("ctr tasks ls: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == guid {
			first, _ = strconv.Atoi(f[1])
		}
	}
	if first == 0 {
		return 0, nil, fmt.Errorf("no task %s:\n%s", guid, out)
	}
	out, err = exec.Command("ctr", "--address", Socket(), "-n", ns, "tasks", "ps", guid).CombinedOutput()
	if err != nil {
		return 0, nil, fmt.Errorf("ctr tasks ps %s: %v: %s", guid, err, out)
	}
	for _, line := range strings.Split(string(out), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			procs = append(procs, p)
		}
	}
	return first, procs, nil
}

func readProc(pid int) (Proc, bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	st, err1 := os.ReadFile(dir + "/status")
	cmd, err2 := os.ReadFile(dir + "/cmdline")
	if err1 != nil || err2 != nil {
		return Proc{}, false
	}
	p := Proc{Pid: pid, Status: string(st), Argv: strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")}
	for _, line := range strings.Split(p.Status, "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		switch {
		case k == "PPid" && len(f) > 0:
			p.PPid, _ = strconv.Atoi(f[0])
		case k == "Uid" && len(f) > 0:
			p.UID = f[0]
		}
	}
	return p, true
}

// StatusField answers the first word of a /proc/PID/status field.
func (p Proc) StatusField(name string) string {
	for _, line := range strings.Split(p.Status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == name {
			if f := strings.Fields(v); len(f) > 0 {
				return f[0]
			}
			return ""
		}
	}
	return ""
}

// IsInit says whether p is cellinit (proxy.init's first process).
func (p Proc) IsInit() bool { return len(p.Argv) > 0 && p.Argv[0] == InitPath }

// Processes is what a test needs of one container: its app, and with
// proxy.init its cellinit; the proxy when one runs (its uid is the
// proxy's, whichever way it was started).
type Processes struct {
	App, Init, Proxy *Proc
}

// ContainerProcs finds guid's app, init and proxy. Without cellinit the
// app is the task's first process; with it, the app is cellinit's child
// that is neither the proxy nor a helper still changing its credentials
// (running cellinit itself).
func (a *Agent) ContainerProcs(guid string) (Processes, error) {
	first, procs, err := a.TaskProcs(guid)
	if err != nil {
		return Processes{}, err
	}
	proxyUID := strconv.Itoa(int(a.Config.Proxy.UID))
	var ps Processes
	for i := range procs {
		p := &procs[i]
		switch {
		case p.Pid == first && p.IsInit():
			ps.Init = p
		case p.Pid == first:
			ps.App = p
		case p.UID == proxyUID && a.Config.Proxy.Enabled:
			ps.Proxy = p
		}
	}
	if ps.Init != nil {
		for i := range procs {
			p := &procs[i]
			if p.PPid == first && p != ps.Proxy && !p.IsInit() {
				ps.App = p
			}
		}
	}
	if ps.App == nil {
		return ps, fmt.Errorf("no app process in %s (yet): %d processes", guid, len(procs))
	}
	return ps, nil
}
