package runtime

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	apitask "github.com/containerd/containerd/api/types/task"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/image-spec/identity"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/executor"
)

const (
	labelOwner     = "cellagent.owner"
	labelGUID      = "cellagent.guid"
	labelLogPath   = "cellagent.log-path"
	labelLogMax    = "cellagent.log-max-bytes"
	labelPreloaded = "cellagent.preloaded"
	// labelInitLogs marks a container whose init (cellinit) writes the
	// app's log itself: its task starts without the logging binary.
	labelInitLogs = "cellagent.init-logs"
	// labelLogin marks an image pulled with a login: each start that uses
	// it asks the registry again with its own login.
	labelLogin = "cellagent.login"
	// PreloadedPrefix marks an image that is a configured rootfs directory.
	PreloadedPrefix = "preloaded:"
	// LoggerArg names the log file among the logging binary's arguments;
	// it also makes the cellagent binary run as that binary (cmd/cellagent,
	// cmd/cellagent-logger).
	LoggerArg = "cellagent-logger"
)

// Config says how to reach containerd and what this agent owns there.
type Config struct {
	Socket    string
	Namespace string
	// CellID labels every container, so recovery only touches its own.
	CellID      string
	Snapshotter string
	// Preloaded maps NAME of "preloaded:NAME" to a rootfs directory.
	Preloaded map[string]string
	// LoggerBinary is the executable the shim runs to write app output.
	LoggerBinary string
	// CgroupRoot is where the cgroup file system is mounted; empty is
	// DefaultCgroupRoot.
	CgroupRoot string
	// InsecureRegistries are the registries (host or host:port, as in an
	// image reference) pulled from over plain HTTP; any other is HTTPS.
	InsecureRegistries []string
	// PullTimeout bounds one image pull; zero is DefaultPullTimeout.
	PullTimeout time.Duration
	// Clock times the waits of the adapter's own (a killed stray shim's
	// exit); nil is the real clock.
	Clock clock.Clock
}

// Client is the containerd adapter.
type Client struct {
	client      *containerd.Client
	socket      string
	ns          string
	cellID      string
	snapshotter string
	rootfs      map[string]string
	logger      string
	cgroups     *Cgroups

	preloadMu sync.Mutex        // guards preloaded
	preloaded map[string]string // name -> committed snapshot key

	upperMu sync.Mutex        // guards uppers
	uppers  map[string]string // guid -> writable directory (WritableBytes)

	// created holds what Create made until Start takes it (or Delete
	// drops it): Start then reads the labels Create wrote from it instead
	// of asking containerd for the container twice (LoadContainer, then
	// Labels, each a Get of the whole record with its spec).
	createdMu sync.Mutex
	created   map[string]containerd.Container

	insecure    []string
	pullTimeout time.Duration
	pullMu      sync.Mutex           // guards pulls
	pulls       map[string]*pullCall // image and login -> the pull under way
	clock       clock.Clock
}

var (
	_ containerstore.ContainerRuntime = (*Client)(nil)
	_ containerstore.TaskRunner       = (*Client)(nil)
	_ containerstore.StrayShimCleaner = (*Client)(nil)
)

// New connects to containerd. It does not wait for containerd to answer:
// Ping tells whether it does.
func New(cfg Config) (*Client, error) {
	if cfg.Snapshotter == "" {
		cfg.Snapshotter = "overlayfs"
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = DefaultCgroupRoot
	}
	if cfg.PullTimeout <= 0 {
		cfg.PullTimeout = DefaultPullTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.NewClock()
	}
	cl, err := containerd.New(cfg.Socket, containerd.WithDefaultNamespace(cfg.Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", cfg.Socket, err)
	}
	return &Client{client: cl, socket: cfg.Socket, ns: cfg.Namespace, cellID: cfg.CellID, snapshotter: cfg.Snapshotter,
		rootfs: cfg.Preloaded, logger: cfg.LoggerBinary, preloaded: map[string]string{},
		cgroups: NewCgroups(cfg.CgroupRoot, cfg.Namespace), insecure: slices.Clone(cfg.InsecureRegistries),
		pullTimeout: cfg.PullTimeout, pulls: map[string]*pullCall{}, clock: cfg.Clock,
		created: map[string]containerd.Container{}}, nil
}

// Cgroups answers the reader of this namespace's container cgroups (memory
// and CPU figures on a v1 or v2 host).
func (c *Client) Cgroups() *Cgroups { return c.cgroups }

// Close closes the connection; containers keep running.
func (c *Client) Close() error { return c.client.Close() }

func (c *Client) nsCtx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, c.ns)
}

func snapshotKey(guid string) string { return "cellagent-" + guid }

func (c *Client) Ping(ctx context.Context) error {
	// gRPC waits for a connection that may never come back: bound it.
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ok, err := c.client.IsServing(c.nsCtx(ctx))
	if err != nil || !ok {
		return fmt.Errorf("containerd not serving: %w", errors.Join(err, executor.ErrUnavailable))
	}
	return nil
}

// Validate checks, without making anything, that image exists and, for
// preloaded images, that user exists in it. A docker image need only be
// a well-formed reference: PullImage fetches it when it is missing.
func (c *Client) Validate(ctx context.Context, image, user string) error {
	if _, ok, err := dockerRef(image); ok {
		return err
	}
	if name, ok := strings.CutPrefix(image, PreloadedPrefix); ok {
		dir, ok := c.rootfs[name]
		if !ok {
			return executor.NewError(executor.ErrInvalidRequest, "image %q: no preloaded rootfs named %q (configured: %s)", image, name, c.preloadedNames())
		}
		if _, err := c.userInDir(dir, user); err != nil {
			return executor.NewError(executor.ErrInvalidRequest, "image %q: %v", image, err)
		}
		return nil
	}
	if _, err := c.client.GetImage(c.nsCtx(ctx), image); err != nil {
		if errdefs.IsNotFound(err) {
			return executor.NewError(executor.ErrInvalidRequest, "image %q is not in containerd's content store (namespace %s); import it with cellctl import (POST /v1/images) or use preloaded:NAME", image, c.ns)
		}
		return fmt.Errorf("look up image %q: %w", image, err)
	}
	return nil
}

func (c *Client) preloadedNames() string {
	names := make([]string, 0, len(c.rootfs))
	for n := range c.rootfs {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func (c *Client) userInDir(dir, user string) (containerstore.User, error) {
	return userInRootfs(dir, user)
}

func (c *Client) snapshotLabels(guid string) snapshots.Opt {
	return snapshots.WithLabels(map[string]string{gcRootLabel: time.Now().UTC().Format(time.RFC3339),
		labelOwner: c.cellID, labelGUID: guid})
}

func (c *Client) Prepare(ctx context.Context, logger lager.Logger, guid, image, user string) (containerstore.User, error) {
	ctx = c.nsCtx(ctx)
	sn := c.client.SnapshotService(c.snapshotter)
	if name, ok := strings.CutPrefix(image, PreloadedPrefix); ok {
		dir, ok := c.rootfs[name]
		if !ok {
			return containerstore.User{}, executor.NewError(executor.ErrInvalidRequest, "no preloaded rootfs named %q", name)
		}
		u, err := c.userInDir(dir, user)
		if err != nil {
			return containerstore.User{}, executor.NewError(executor.ErrInvalidRequest, "image %q: %v", image, err)
		}
		parent, err := c.preloadedSnapshot(ctx, name, dir)
		if err != nil {
			return containerstore.User{}, err
		}
		if _, err := sn.Prepare(ctx, snapshotKey(guid), parent, c.snapshotLabels(guid)); err != nil {
			return containerstore.User{}, fmt.Errorf("prepare snapshot for %s: %w", guid, err)
		}
		return u, nil
	}
	name, docker, err := dockerRef(image)
	if err != nil {
		return containerstore.User{}, err
	}
	if !docker {
		name = image
	}
	img, err := c.client.GetImage(ctx, name)
	if err != nil {
		if docker && errdefs.IsNotFound(err) {
			return containerstore.User{}, fmt.Errorf("image %q has not been pulled (PullImage first): %w", image, err)
		}
		return containerstore.User{}, fmt.Errorf("get image %q: %w", image, err)
	}
	if !usable(img.Metadata()) {
		// A pull's record before (or without) its layer check.
		return containerstore.User{}, fmt.Errorf("image %q has been fetched but not checked yet (PullImage first)", image)
	}
	if ok, _ := img.IsUnpacked(ctx, c.snapshotter); !ok {
		if err := img.Unpack(ctx, c.snapshotter); err != nil {
			return containerstore.User{}, fmt.Errorf("unpack image %q: %w", image, err)
		}
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return containerstore.User{}, fmt.Errorf("image %q rootfs: %w", image, err)
	}
	mounts, err := sn.Prepare(ctx, snapshotKey(guid), identity.ChainID(diffIDs).String(), c.snapshotLabels(guid))
	if err != nil {
		return containerstore.User{}, fmt.Errorf("prepare snapshot for %s: %w", guid, err)
	}
	var u containerstore.User
	err = mount.WithReadonlyTempMount(ctx, mounts, func(root string) error {
		var lerr error
		u, lerr = c.userInDir(root, user)
		return lerr
	})
	if err != nil {
		_ = sn.Remove(ctx, snapshotKey(guid))
		return containerstore.User{}, executor.NewError(executor.ErrInvalidRequest, "image %q: %v", image, err)
	}
	return u, nil
}

func (c *Client) Create(ctx context.Context, logger lager.Logger, spec containerstore.ContainerSpec) error {
	ctx = c.nsCtx(ctx)
	mounts := make([]specs.Mount, 0, len(spec.Mounts))
	for _, m := range spec.Mounts {
		opts := []string{"rbind", "nosuid", "nodev"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		mounts = append(mounts, specs.Mount{Source: m.Source, Destination: m.Destination, Type: "bind", Options: opts})
	}
	dir := spec.Dir
	if dir == "" {
		dir = "/"
	}
	opts := []oci.SpecOpts{
		oci.WithProcessArgs(append([]string{spec.Path}, spec.Args...)...),
		oci.WithDefaultPathEnv,
		oci.WithEnv(spec.Env),
		oci.WithProcessCwd(dir),
		oci.WithUIDGID(spec.User.UID, spec.User.GID),
		oci.WithHostname(spec.Hostname),
		oci.WithMounts(mounts),
		seccomp.WithDefaultProfile(),
		oci.WithNoNewPrivileges,
		oci.WithDroppedCapabilities([]string{"CAP_NET_RAW"}),
	}
	if spec.Init == nil {
		opts = append(opts, withoutCapabilitiesUnlessRoot(spec.User.UID))
	} else {
		opts = append(opts, withInit(*spec.Init))
	}
	if spec.MemoryLimitBytes > 0 {
		opts = append(opts, oci.WithMemoryLimit(spec.MemoryLimitBytes))
	}
	if spec.MaxPids > 0 {
		opts = append(opts, oci.WithPidsLimit(spec.MaxPids))
	}
	if spec.CPUShares > 0 {
		opts = append(opts, oci.WithCPUShares(spec.CPUShares))
	}
	if spec.NetNSPath == "" {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostHostsFile, oci.WithHostResolvconf)
	} else {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: spec.NetNSPath}))
	}
	labels := map[string]string{labelOwner: c.cellID, labelGUID: spec.GUID,
		labelLogPath: spec.LogPath, labelLogMax: strconv.FormatInt(spec.LogMaxBytes, 10)}
	if spec.Init != nil && spec.Init.Config.AppLog != "" {
		labels[labelInitLogs] = "true"
	}
	bindCheckLabels(spec.Mounts, labels)
	for k, v := range spec.Labels {
		labels[k] = v
	}
	ctr, err := c.client.NewContainer(ctx, spec.GUID,
		containerd.WithSnapshotter(c.snapshotter),
		containerd.WithSnapshot(snapshotKey(spec.GUID)),
		containerd.WithRuntime("io.containerd.runc.v2", nil),
		containerd.WithContainerLabels(labels),
		containerd.WithNewSpec(opts...))
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			return fmt.Errorf("create container %s: %w", spec.GUID, executor.ErrContainerExists)
		}
		return fmt.Errorf("create container %s: %w", spec.GUID, err)
	}
	c.createdMu.Lock()
	c.created[spec.GUID] = ctr
	c.createdMu.Unlock()
	return nil
}

// takeCreated answers the container Create made for guid in this
// process, if Start has not taken it yet, and forgets it.
func (c *Client) takeCreated(guid string) (containerd.Container, bool) {
	c.createdMu.Lock()
	defer c.createdMu.Unlock()
	ctr, ok := c.created[guid]
	delete(c.created, guid)
	return ctr, ok
}

func (c *Client) Start(ctx context.Context, logger lager.Logger, guid string) (<-chan containerstore.Exit, error) {
	ctx = c.nsCtx(ctx)
	// What Create wrote: its labels are the record's (nothing of ours
	// changes them between Create and Start).
	var labels map[string]string
	ctr, ok := c.takeCreated(guid)
	if ok {
		info, err := ctr.Info(ctx, containerd.WithoutRefreshedMetadata)
		if err != nil {
			return nil, fmt.Errorf("labels of %s: %w", guid, err)
		}
		labels = info.Labels
	} else {
		var err error
		if ctr, err = c.client.LoadContainer(ctx, guid); err != nil {
			return nil, notFound(guid, err)
		}
		if labels, err = ctr.Labels(ctx); err != nil {
			return nil, fmt.Errorf("labels of %s: %w", guid, err)
		}
	}
	var creator cio.Creator = cio.NullIO
	if c.logger != "" && labels[labelLogPath] != "" && labels[labelInitLogs] != "true" {
		creator = cio.BinaryIO(c.logger, map[string]string{LoggerArg: labels[labelLogPath], "max-bytes": labels[labelLogMax]})
	}
	task, err := ctr.NewTask(ctx, creator)
	if err != nil {
		return nil, fmt.Errorf("create task %s: %w", guid, err)
	}
	exits, err := waitExit(ctx, task)
	if err != nil {
		_, _ = task.Delete(ctx, containerd.WithProcessKill)
		return nil, err
	}
	if err := verifyBindMounts(fmt.Sprintf("/proc/%d/root", task.Pid()), labels); err != nil {
		_, _ = task.Delete(ctx, containerd.WithProcessKill)
		return nil, fmt.Errorf("start task %s: %w", guid, err)
	}
	if err := task.Start(ctx); err != nil {
		_, _ = task.Delete(ctx, containerd.WithProcessKill)
		return nil, fmt.Errorf("start task %s: %w", guid, err)
	}
	return exits, nil
}

func (c *Client) Attach(ctx context.Context, logger lager.Logger, guid string) (<-chan containerstore.Exit, error) {
	ctx = c.nsCtx(ctx)
	ctr, err := c.client.LoadContainer(ctx, guid)
	if err != nil {
		return nil, notFound(guid, err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return nil, notFound(guid, err)
	}
	return waitExit(ctx, task)
}

// waitExit turns containerd's exit channel into ours. The goroutine ends
// when the task exits or ctx ends (containerd then sends an error).
func waitExit(ctx context.Context, task containerd.Task) (<-chan containerstore.Exit, error) {
	statusC, err := task.Wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait for task %s: %w", task.ID(), err)
	}
	out := make(chan containerstore.Exit, 1)
	go func() {
		st := <-statusC
		code, _, err := st.Result()
		out <- containerstore.Exit{Status: code, Err: err}
	}()
	return out, nil
}

func (c *Client) Signal(ctx context.Context, guid string, sig syscall.Signal) error {
	ctx = c.nsCtx(ctx)
	ctr, err := c.client.LoadContainer(ctx, guid)
	if err != nil {
		return notFound(guid, err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return notFound(guid, err)
	}
	if err := task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("signal %s with %s: %w", guid, sig, err)
	}
	return nil
}

func (c *Client) Delete(ctx context.Context, logger lager.Logger, guid string) error {
	ctx = c.nsCtx(ctx)
	c.forgetUpperDir(guid)
	c.takeCreated(guid)
	var errs []error
	ctr, err := c.client.LoadContainer(ctx, guid)
	switch {
	case err == nil:
		if task, err := ctr.Task(ctx, nil); err == nil {
			if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete task: %w", err))
			}
		} else if errdefs.IsNotFound(err) {
			// No task: its creation may have been cut short (agent
			// killed), leaving a shim that nothing else will end.
			if err := c.killStrayShims(ctx, logger, c.taskCheck(ctx, nil), func(id string) bool { return id == guid }); err != nil {
				errs = append(errs, err)
			}
			if err := c.cgroups.Remove(guid); err != nil {
				errs = append(errs, err)
			}
		} else {
			errs = append(errs, fmt.Errorf("load task: %w", err))
		}
		if err := ctr.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete container: %w", err))
		}
	case !errdefs.IsNotFound(err):
		errs = append(errs, fmt.Errorf("load container: %w", err))
	}
	if err := c.client.SnapshotService(c.snapshotter).Remove(ctx, snapshotKey(guid)); err != nil && !errdefs.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("remove snapshot: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete %s: %w", guid, err)
	}
	return nil
}

// List answers this cell's containers with their tasks' states, in two
// calls to containerd (containers with their labels; every task of the
// namespace) instead of three per container: recovery of a 250-instance
// cell starts with it.
func (c *Client) List(ctx context.Context) ([]containerstore.RuntimeContainer, error) {
	ctx = c.nsCtx(ctx)
	ctrs, err := c.client.ContainerService().List(ctx, fmt.Sprintf("labels.%q==%s", labelOwner, c.cellID))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	resp, err := c.client.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	byID := make(map[string]*apitask.Process, len(resp.Tasks))
	for _, t := range resp.Tasks {
		byID[t.ID] = t
	}
	seen := map[string]bool{}
	var out []containerstore.RuntimeContainer
	for _, ctr := range ctrs {
		rc := containerstore.RuntimeContainer{GUID: ctr.ID, Labels: ctr.Labels, Status: containerstore.TaskNone}
		if t, ok := byID[ctr.ID]; ok {
			rc.Status, rc.ExitStatus = taskStatus(t.Status), t.ExitStatus
		}
		seen[rc.GUID] = true
		out = append(out, rc)
	}
	// Snapshots whose container was never made (crash between Prepare and Create).
	err = c.client.SnapshotService(c.snapshotter).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Labels[labelOwner] == c.cellID && info.Labels[labelGUID] != "" && !seen[info.Labels[labelGUID]] {
			out = append(out, containerstore.RuntimeContainer{GUID: info.Labels[labelGUID], Status: containerstore.TaskNone})
		}
		return nil
	}, fmt.Sprintf("labels.%q==%s", labelOwner, c.cellID))
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	return out, nil
}

// taskStatus maps containerd's task state to the store's.
func taskStatus(s apitask.Status) containerstore.TaskStatus {
	switch s {
	case apitask.Status_CREATED:
		return containerstore.TaskCreated
	case apitask.Status_RUNNING:
		return containerstore.TaskRunning
	case apitask.Status_STOPPED:
		return containerstore.TaskStopped
	case apitask.Status_PAUSED, apitask.Status_PAUSING:
		return containerstore.TaskPaused
	}
	return containerstore.TaskUnknown
}

func notFound(guid string, err error) error {
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%s: %w", guid, executor.ErrContainerNotFound)
	}
	return fmt.Errorf("load %s: %w", guid, err)
}

// withoutCapabilitiesUnlessRoot leaves a process that is not uid 0 no
// effective, permitted, inheritable or ambient capability. runc gives the
// process user the spec's capabilities whatever its uid, so a non-root app
// had CHOWN, DAC_OVERRIDE, FOWNER, SETUID, ...: it could read any file in
// its container (the proxy's key) and setuid(0) to root. The bounding set
// stays (no_new_privs keeps the process from gaining any of it).
func withoutCapabilitiesUnlessRoot(uid uint32) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if uid == 0 || s.Process == nil || s.Process.Capabilities == nil {
			return nil
		}
		c := s.Process.Capabilities
		c.Effective, c.Permitted, c.Inheritable, c.Ambient = nil, nil, nil, nil
		return nil
	}
}
