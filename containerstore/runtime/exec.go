package runtime

import (
	"context"
	"fmt"
	"strconv"
	"syscall"

	"code.cloudfoundry.org/lager/v3"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/executor"
)

var _ containerstore.ProcessRunner = (*Client)(nil)

func (c *Client) task(ctx context.Context, guid string) (containerd.Container, containerd.Task, error) {
	ctr, err := c.client.LoadContainer(ctx, guid)
	if err != nil {
		return nil, nil, notFound(guid, err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return nil, nil, notFound(guid, err)
	}
	return ctr, task, nil
}

func (c *Client) Exec(ctx context.Context, logger lager.Logger, guid, id string, p containerstore.ProcessSpec) (uint32, <-chan containerstore.Exit, error) {
	ctx = c.nsCtx(ctx)
	ctr, task, err := c.task(ctx, guid)
	if err != nil {
		return 0, nil, err
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("spec of %s: %w", guid, err)
	}
	// An exited process of the same id blocks the id: remove it first.
	if old, err := task.LoadProcess(ctx, id, nil); err == nil {
		if _, err := old.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return 0, nil, fmt.Errorf("remove old process %s in %s: %w", id, guid, err)
		}
	}
	ps := *spec.Process
	ps.Args = append([]string{p.Path}, p.Args...)
	ps.Env = append(append([]string{}, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), p.Env...)
	ps.User = specs.User{UID: p.User.UID, GID: p.User.GID}
	ps.Cwd = "/"
	ps.Terminal = false
	if p.NoCapabilities {
		ps.Capabilities = &specs.LinuxCapabilities{}
	}
	if p.NoFile > 0 {
		ps.Rlimits = withNoFile(ps.Rlimits, p.NoFile)
	}
	var creator cio.Creator = cio.NullIO
	if c.logger != "" && p.LogPath != "" {
		creator = cio.BinaryIO(c.logger, map[string]string{LoggerArg: p.LogPath, "max-bytes": strconv.FormatInt(p.LogMaxBytes, 10)})
	}
	proc, err := task.Exec(ctx, id, &ps, creator)
	if err != nil {
		return 0, nil, fmt.Errorf("exec %s in %s: %w", id, guid, err)
	}
	exits, err := waitProcess(ctx, proc)
	if err != nil {
		_, _ = proc.Delete(ctx, containerd.WithProcessKill)
		return 0, nil, err
	}
	if err := proc.Start(ctx); err != nil {
		_, _ = proc.Delete(ctx, containerd.WithProcessKill)
		return 0, nil, fmt.Errorf("start %s in %s: %w", id, guid, err)
	}
	return proc.Pid(), exits, nil
}

func (c *Client) AttachExec(ctx context.Context, logger lager.Logger, guid, id string) (uint32, <-chan containerstore.Exit, error) {
	ctx = c.nsCtx(ctx)
	_, task, err := c.task(ctx, guid)
	if err != nil {
		return 0, nil, err
	}
	proc, err := task.LoadProcess(ctx, id, nil)
	if err != nil {
		return 0, nil, notFound(guid+"/"+id, err)
	}
	st, err := proc.Status(ctx)
	if err != nil {
		if errdefs.IsNotFound(err) {
			err = executor.ErrContainerNotFound
		}
		return 0, nil, fmt.Errorf("status of process %s in %s: %w", id, guid, err)
	}
	if st.Status != containerd.Running {
		return 0, nil, fmt.Errorf("process %s in %s is %s: %w", id, guid, st.Status, containerstore.ErrProcessNotRunning)
	}
	exits, err := waitProcess(ctx, proc)
	if err != nil {
		return 0, nil, err
	}
	return proc.Pid(), exits, nil
}

func (c *Client) SignalExec(ctx context.Context, guid, id string, sig syscall.Signal) error {
	ctx = c.nsCtx(ctx)
	_, task, err := c.task(ctx, guid)
	if err != nil {
		return err
	}
	proc, err := task.LoadProcess(ctx, id, nil)
	if err != nil {
		return notFound(guid+"/"+id, err)
	}
	if err := proc.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("signal %s in %s: %w", id, guid, err)
	}
	return nil
}

func waitProcess(ctx context.Context, proc containerd.Process) (<-chan containerstore.Exit, error) {
	statusC, err := proc.Wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait for %s: %w", proc.ID(), err)
	}
	out := make(chan containerstore.Exit, 1)
	go func() {
		st := <-statusC
		code, _, err := st.Result()
		out <- containerstore.Exit{Status: code, Err: err}
	}()
	return out, nil
}

// withNoFile answers rlimits with RLIMIT_NOFILE set to n (soft and hard).
func withNoFile(rlimits []specs.POSIXRlimit, n uint64) []specs.POSIXRlimit {
	out := make([]specs.POSIXRlimit, 0, len(rlimits)+1)
	for _, r := range rlimits {
		if r.Type != "RLIMIT_NOFILE" {
			out = append(out, r)
		}
	}
	return append(out, specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: n, Soft: n})
}
