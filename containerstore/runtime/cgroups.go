package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultCgroupRoot is where the cgroup file system is mounted.
const DefaultCgroupRoot = "/sys/fs/cgroup"

// Cgroups reads and removes the cgroups of one containerd namespace's
// containers, on either hierarchy. containerd's default spec gives runc
// the cgroup path /<namespace>/<id>, which lands at
//
//	v1 (one hierarchy per controller): <root>/<controller>/<namespace>/<id>
//	v2 (unified):                      <root>/<namespace>/<id>
//
// It reads files rather than asking containerd's task Metrics API (which
// also speaks both hierarchies): a scrape reads every running container,
// up to 500 at density, and a Metrics call goes through containerd and the
// shim. Measured on a 2-core test host with one running task, 2000 calls
// each, three rounds: task.Metrics 2.2, 1.5, 2.8 ms per call; this
// reader's memory and CPU files together 53, 20, 19 µs per container. At
// 500 containers that is about a second per scrape against ~10-25 ms.
//
// The hierarchy is decided once, at NewCgroups: a host does not switch
// without a reboot. Safe for concurrent use (it holds no state that
// changes).
type Cgroups struct {
	root      string
	namespace string
	unified   bool
}

// NewCgroups answers the reader for namespace's cgroups under root. The
// hierarchy is v2 when root holds cgroup.controllers (only the unified
// hierarchy's root has it; a hybrid host mounts v2 at root/unified and
// counts as v1, which is where runc puts the controllers' limits).
func NewCgroups(root, namespace string) *Cgroups {
	_, err := os.Stat(filepath.Join(root, "cgroup.controllers"))
	return &Cgroups{root: root, namespace: namespace, unified: err == nil}
}

// Unified answers whether the host uses the cgroup v2 hierarchy.
func (g *Cgroups) Unified() bool { return g.unified }

// MemoryBytes answers the memory charged to guid's cgroup (page cache
// included, as the kernel counts it against the limit).
func (g *Cgroups) MemoryBytes(guid string) (uint64, error) {
	if err := checkID(guid); err != nil {
		return 0, err
	}
	if g.unified {
		return readUint(filepath.Join(g.root, g.namespace, guid, "memory.current"))
	}
	return readUint(filepath.Join(g.root, "memory", g.namespace, guid, "memory.usage_in_bytes"))
}

// Procs answers the host pids of the processes in guid's cgroup.
func (g *Cgroups) Procs(guid string) ([]uint32, error) {
	if err := checkID(guid); err != nil {
		return nil, err
	}
	path := filepath.Join(g.root, g.namespace, guid, "cgroup.procs")
	if !g.unified {
		path = filepath.Join(g.root, "memory", g.namespace, guid, "cgroup.procs")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var pids []uint32
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		pids = append(pids, uint32(pid))
	}
	return pids, nil
}

// CPUTime answers the CPU time guid's cgroup has used, user and system.
func (g *Cgroups) CPUTime(guid string) (time.Duration, error) {
	if err := checkID(guid); err != nil {
		return 0, err
	}
	if !g.unified {
		ns, err := readUint(filepath.Join(g.root, "cpuacct", g.namespace, guid, "cpuacct.usage"))
		return time.Duration(ns), err
	}
	path := filepath.Join(g.root, g.namespace, guid, "cpu.stat")
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "usage_usec "); ok {
			us, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", path, err)
			}
			return time.Duration(us) * time.Microsecond, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return 0, fmt.Errorf("%s: no usage_usec", path)
}

// IDs answers the ids that have a cgroup in the namespace (in any
// controller's hierarchy on v1).
func (g *Cgroups) IDs() map[string]bool {
	ids := map[string]bool{}
	for _, dir := range g.namespaceDirs() {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() { // the rest are the cgroup's control files
				ids[e.Name()] = true
			}
		}
	}
	return ids
}

// Remove removes guid's cgroup from every hierarchy. A cgroup that still
// has processes (or child cgroups) cannot be removed and is an error; one
// that is not there is not.
func (g *Cgroups) Remove(guid string) error {
	if err := checkID(guid); err != nil {
		return err
	}
	var errs []error
	for _, dir := range g.namespaceDirs() {
		path := filepath.Join(dir, guid)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", path, err))
		}
	}
	return errors.Join(errs...)
}

// namespaceDirs answers the namespace's directory in each hierarchy. On v1
// a controller mounted under two names (cpu -> cpu,cpuacct) is a symlink
// and is left out: its target is listed already. No cgroup file system
// mounted at root answers none.
func (g *Cgroups) namespaceDirs() []string {
	if g.unified {
		return []string{filepath.Join(g.root, g.namespace)}
	}
	controllers, err := os.ReadDir(g.root)
	if err != nil {
		return nil
	}
	var dirs []string
	for _, c := range controllers {
		if c.IsDir() {
			dirs = append(dirs, filepath.Join(g.root, c.Name(), g.namespace))
		}
	}
	return dirs
}

// checkID refuses an id that would leave the namespace's directory.
func checkID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("invalid container id %q for a cgroup path", id)
	}
	return nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}
