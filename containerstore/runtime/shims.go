package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/errdefs"
)

// ShimProcess is a containerd-shim-runc-v2 process and the processes it
// started (the logging binary, a task that never got going).
type ShimProcess struct {
	PID       int
	Namespace string
	ID        string
	Address   string
	Children  []int
}

// FindShims lists the runc v2 shims under procDir (/proc) that serve
// namespace on the containerd at address.
func FindShims(procDir, namespace, address string) ([]ShimProcess, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, err
	}
	var shims []ShimProcess
	parents := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(filepath.Join(procDir, e.Name(), "stat")); ok {
			parents[ppid] = append(parents[ppid], pid)
		}
		b, err := os.ReadFile(filepath.Join(procDir, e.Name(), "cmdline"))
		if err != nil {
			continue // gone meanwhile
		}
		s, ok := parseShimCmdline(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"))
		if ok && s.Namespace == namespace && s.Address == address {
			s.PID = pid
			shims = append(shims, s)
		}
	}
	for i := range shims {
		shims[i].Children = parents[shims[i].PID]
	}
	return shims, nil
}

// parseShimCmdline reads `containerd-shim-runc-v2 -namespace NS -id ID
// -address SOCK` (flags in any order, "-flag value" or "-flag=value").
func parseShimCmdline(args []string) (ShimProcess, bool) {
	if len(args) == 0 || filepath.Base(args[0]) != "containerd-shim-runc-v2" {
		return ShimProcess{}, false
	}
	var s ShimProcess
	for i := 1; i < len(args); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !hasValue && i+1 < len(args) {
			value = args[i+1]
		}
		switch name {
		case "namespace":
			s.Namespace = value
		case "id":
			s.ID = value
		case "address":
			s.Address = value
		default:
			continue
		}
		if !hasValue {
			i++
		}
	}
	return s, s.Namespace != "" && s.ID != "" && s.Address != ""
}

// parentOf reads the ppid from /proc/PID/stat ("pid (comm) state ppid ...";
// comm may hold spaces and parentheses, so parse after the last ')').
func parentOf(statPath string) (int, bool) {
	b, err := os.ReadFile(statPath)
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(fields[1])
	return ppid, err == nil
}

// CleanupStrayShims kills the shims of this agent's namespace that serve
// no task containerd knows of (their container is gone, or has no task),
// with what they started. They are left when the agent dies in the middle
// of creating a task: containerd drops the task, but the shim it had
// started stays, holding the logging binary's pipe open (seen in the kill
// -9 fault test: a shim and a logger per interrupted start). Run it at
// recovery, before any new task is made: while a task is being created its
// shim runs before containerd lists the task.
//
// Then it removes the cgroups of the namespace that belong to no task: a
// `runc init` killed before its task existed leaves them behind.
func (c *Client) CleanupStrayShims(ctx context.Context, logger lager.Logger, hadTask func(guid string) bool) error {
	has := c.taskCheck(ctx, hadTask)
	err := c.killStrayShims(ctx, logger, has, func(string) bool { return true })
	return errors.Join(err, c.removeStrayCgroups(ctx, logger, has))
}

// taskCheck answers whether a container has a task: yes for what known
// says yes to, else what containerd's task list says, asked once.
// Containerd asks every task's shim for its state to list them (500 shim
// calls on a 500-instance cell), so a restart where known covers every
// shim and cgroup does not list them at all.
func (c *Client) taskCheck(ctx context.Context, known func(guid string) bool) func(guid string) (bool, error) {
	return taskChecker(known, c.tasksOnce(ctx))
}

// taskChecker is taskCheck with the list (asked once) given.
func taskChecker(known func(guid string) bool, listed func() (map[string]bool, error)) func(guid string) (bool, error) {
	return func(guid string) (bool, error) {
		if known != nil && known(guid) {
			return true, nil
		}
		ids, err := listed()
		return ids[guid], err
	}
}

// tasksOnce answers taskIDs, asked of containerd at the first call only.
func (c *Client) tasksOnce(ctx context.Context) func() (map[string]bool, error) {
	return sync.OnceValues(func() (map[string]bool, error) { return c.taskIDs(ctx) })
}

// removeStrayCgroups removes the namespace's cgroups whose container is
// gone or has no task.
func (c *Client) removeStrayCgroups(ctx context.Context, logger lager.Logger, has func(guid string) (bool, error)) error {
	var errs []error
	for guid := range c.cgroups.IDs() {
		withTask, err := has(guid)
		if err != nil {
			return err
		}
		if withTask || c.hasTask(ctx, guid) {
			continue
		}
		logger.Info("removing-stray-cgroup", lager.Data{"container-guid": guid})
		errs = append(errs, c.cgroups.Remove(guid))
	}
	return errors.Join(errs...)
}

// killStrayShims is CleanupStrayShims for the guids match accepts.
func (c *Client) killStrayShims(ctx context.Context, logger lager.Logger, has func(guid string) (bool, error), match func(guid string) bool) error {
	shims, err := FindShims("/proc", c.ns, c.socket)
	if err != nil {
		return fmt.Errorf("find shims: %w", err)
	}
	var errs []error
	for _, s := range shims {
		if !match(s.ID) {
			continue
		}
		withTask, err := has(s.ID)
		if err != nil {
			return err
		}
		if withTask || c.hasTask(ctx, s.ID) {
			continue
		}
		logger.Info("killing-stray-shim", lager.Data{"container-guid": s.ID, "pid": s.PID, "children": s.Children})
		pids := append(s.Children, s.PID)
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("kill %d of stray shim %s: %w", pid, s.ID, err))
			}
		}
		// A child may be the task's `runc init`, which made the
		// container's cgroups; runc's delete would have removed them.
		waitGone(c.clock, processAlive, pids, 2*time.Second)
		if err := c.cgroups.Remove(s.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// waitGone waits up to timeout on clk, looking every 20ms, for the
// processes to be reaped; alive answers whether one still exists. It
// answers whether they all went.
func waitGone(clk clock.Clock, alive func(pid int) bool, pids []int, timeout time.Duration) bool {
	deadline := clk.Now().Add(timeout)
	for clk.Now().Before(deadline) {
		if !slices.ContainsFunc(pids, alive) {
			return true
		}
		clk.Sleep(20 * time.Millisecond)
	}
	return false
}

// processAlive answers whether pid exists (signal 0).
func processAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// hasTask asks containerd about guid's task alone; only a clear "not
// found" answers false. The task list leaves out a task whose shim did not
// answer in time: such a shim is slow, not stray, and is not killed.
func (c *Client) hasTask(ctx context.Context, guid string) bool {
	ctx = c.nsCtx(ctx)
	ctr, err := c.client.LoadContainer(ctx, guid)
	if err == nil {
		_, err = ctr.Task(ctx, nil)
	}
	return err == nil || !errdefs.IsNotFound(err)
}

// taskIDs answers the containers of the namespace that have a task, in one
// call: recovery looks at every shim and cgroup, 250 of each on a full
// cell, and two calls per container there cost ~200 ms of the restart.
func (c *Client) taskIDs(ctx context.Context) (map[string]bool, error) {
	resp, err := c.client.TaskService().List(c.nsCtx(ctx), &tasks.ListTasksRequest{})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	ids := make(map[string]bool, len(resp.Tasks))
	for _, t := range resp.Tasks {
		ids[t.ID] = true
	}
	return ids, nil
}
