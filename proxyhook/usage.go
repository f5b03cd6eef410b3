package proxyhook

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/cellinit"
)

// Usage splits total, the memory charged to guid's container cgroup (the
// runtime adapter reads it, on either cgroup hierarchy), into app and
// proxy: the proxy's share is its anonymous resident memory (RssAnon) from
// /proc, the app's the rest. RssAnon, not VmRSS: the binary's file pages
// are usually charged to the cgroup that first read them (the host), so
// VmRSS can exceed the whole cgroup's usage.
//
// A proxy that cellinit runs has no host pid from containerd: it is the
// process of the container's cgroup (procs) whose pid in the container's
// namespace is the one cellinit's state file names.
func (h *Hook) Usage(guid string, total uint64, procs func(guid string) ([]uint32, error)) *executor.MemoryUsage {
	h.mu.Lock()
	var pid uint32
	supervised := false
	if in, ok := h.instances[guid]; ok && in.sup != nil {
		pid, supervised = in.pid, true
	}
	h.mu.Unlock()
	if supervised && pid == 0 && procs != nil {
		pid = h.initProxyPID(guid, procs)
	}
	proxy := uint64(0)
	if pid != 0 {
		proxy = rss("/proc", pid)
	}
	if proxy > total {
		proxy = total
	}
	return &executor.MemoryUsage{AppBytes: total - proxy, ProxyBytes: proxy}
}

// rss reads RssAnon of pid in bytes from procfs (0 when it is gone).
func rss(procfs string, pid uint32) uint64 {
	f, err := os.Open(procfs + "/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// initProxyPID answers the host pid of cellinit's proxy in guid, 0 when it
// is not running.
func (h *Hook) initProxyPID(guid string, procs func(string) ([]uint32, error)) uint32 {
	st, err := cellinit.ReadState(h.runDir(guid))
	if err != nil || st.Phase != cellinit.PhaseRunning || st.PID == 0 {
		return 0
	}
	pids, err := procs(guid)
	if err != nil {
		return 0
	}
	for _, pid := range pids {
		if nsPID("/proc", pid) == st.PID {
			return pid
		}
	}
	return 0
}

// nsPID answers pid's pid in its innermost pid namespace (the last NSpid
// field), 0 when it is gone.
func nsPID(procfs string, pid uint32) int {
	b, err := os.ReadFile(procfs + "/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0
			}
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	return 0
}
