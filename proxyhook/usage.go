package proxyhook

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"github.com/cellagent/cellagent/executor"
)

// Usage splits total, the memory charged to guid's container cgroup (the
// runtime adapter reads it, on either cgroup hierarchy), into app and
// proxy: the proxy's share is its anonymous resident memory (RssAnon) from
// /proc, the app's the rest. RssAnon, not VmRSS: the binary's file pages
// are usually charged to the cgroup that first read them (the host), so
// VmRSS can exceed the whole cgroup's usage.
func (h *Hook) Usage(guid string, total uint64) *executor.MemoryUsage {
	h.mu.Lock()
	var pid uint32
	if in, ok := h.instances[guid]; ok && in.sup != nil {
		pid = in.pid
	}
	h.mu.Unlock()
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
