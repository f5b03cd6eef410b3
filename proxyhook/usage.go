package proxyhook

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cellagent/cellagent/executor"
)

// Usage answers the memory guid uses, app and proxy apart: the proxy's
// anonymous resident memory (RssAnon) from /proc, the app's the rest of
// the container's cgroup. RssAnon, not VmRSS: the binary's file pages are
// usually charged to the cgroup that first read them (the host), so VmRSS
// can exceed the whole cgroup's usage.
// cgroupDir is the cgroup v1 memory directory of the containers
// (/sys/fs/cgroup/memory/<containerd namespace>).
func (h *Hook) Usage(cgroupDir, guid string) *executor.MemoryUsage {
	b, err := os.ReadFile(filepath.Join(cgroupDir, guid, "memory.usage_in_bytes"))
	if err != nil {
		return nil
	}
	total, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return nil
	}
	h.mu.Lock()
	var pid uint32
	if in, ok := h.instances[guid]; ok && in.sup != nil {
		pid = in.pid
	}
	h.mu.Unlock()
	proxy := uint64(0)
	if pid != 0 {
		proxy = rss(pid)
	}
	if proxy > total {
		proxy = total
	}
	return &executor.MemoryUsage{AppBytes: total - proxy, ProxyBytes: proxy}
}

// rss reads RssAnon of pid in bytes (0 when it is gone).
func rss(pid uint32) uint64 {
	f, err := os.Open("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
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
