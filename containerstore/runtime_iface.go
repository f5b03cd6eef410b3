package containerstore

import (
	"context"
	"errors"
	"syscall"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/cellinit"
)

// Mount is a bind mount into a container.
type Mount struct {
	Source      string
	Destination string
	ReadOnly    bool
	// Dev and Ino are the device and inode Source was checked to be (a
	// request's bind mount): before the process starts the runtime checks
	// that the mounted directory is that one, since runc resolves Source
	// again. Zero: not checked (the agent's own mounts).
	Dev, Ino uint64
}

// User is a resolved process user.
type User struct {
	UID, GID uint32
}

// ContainerSpec is what the store asks the runtime to create. The rootfs
// snapshot was made by Prepare under the same GUID.
type ContainerSpec struct {
	GUID             string
	Path             string
	Args             []string
	Env              []string
	Dir              string
	User             User
	MemoryLimitBytes uint64
	MaxPids          int64
	CPUShares        uint64
	// NetNSPath is the container's network namespace; empty = the host's.
	NetNSPath   string
	Hostname    string
	Mounts      []Mount
	LogPath     string
	LogMaxBytes int64
	Labels      map[string]string
	// Init, when set, is the container's first process: it runs the app
	// (Path, Args, Env, Dir, User) and whatever else its Config says.
	Init *ProcessInit
}

// ProcessInit is a first process that starts the app as its child (the
// proxy hook's cellinit, issue 16). The runtime adds the app's argv, user,
// file limit and HOME rule to Config and runs Path as root: the init
// drops each child to its user.
type ProcessInit struct {
	// Path is the init's executable in the container (a hook mounts it).
	Path   string
	Config cellinit.Config
	// AppEnvHostPath, with Config.AppEnv (the same file in the
	// container), is where the runtime writes the app's environment on
	// the host; the init then runs with a fixed environment of its own.
	AppEnvHostPath string
}

// TaskStatus is what containerd reports of a container's task.
type TaskStatus string

const (
	TaskNone    TaskStatus = "none"
	TaskCreated TaskStatus = "created"
	TaskRunning TaskStatus = "running"
	TaskStopped TaskStatus = "stopped"
	TaskPaused  TaskStatus = "paused"
	TaskUnknown TaskStatus = "unknown"
)

// RuntimeContainer is one container this agent owns, as containerd sees it.
type RuntimeContainer struct {
	GUID       string
	Labels     map[string]string
	Status     TaskStatus
	ExitStatus uint32
}

// Exit is how a task ended.
type Exit struct {
	Status uint32
	Err    error
}

//go:generate go tool counterfeiter -o containerstorefakes/fake_container_runtime.go . ContainerRuntime
//go:generate go tool counterfeiter -o containerstorefakes/fake_task_runner.go . TaskRunner
//go:generate go tool counterfeiter -o containerstorefakes/fake_readiness.go . Readiness
//go:generate go tool counterfeiter -o containerstorefakes/fake_route_hook.go . RouteHook
//go:generate go tool counterfeiter -o containerstorefakes/fake_process_runner.go . ProcessRunner

// ImageConfig is what of an image's own config the runtime answers for a
// start: the environment, which the run request's and the instance's
// variables override (as garden merges an image's env).
type ImageConfig struct {
	Env []string
}

// ContainerRuntime makes and removes containers (containerd adapter).
type ContainerRuntime interface {
	// Validate checks, without making anything, that the image exists (or,
	// for an executor.DockerImagePrefix image, can be pulled) and (where
	// that is cheap) that the user exists in it.
	Validate(ctx context.Context, image, user string) error
	// PullImage makes the image available before Prepare, pulling an
	// executor.DockerImagePrefix image containerd lacks with auth (nil: no
	// login), and answers its config (empty for other images).
	PullImage(ctx context.Context, logger lager.Logger, image string, auth *executor.RegistryAuth) (ImageConfig, error)
	// Prepare resolves the image, makes the container's rootfs snapshot and
	// resolves the process user inside it.
	Prepare(ctx context.Context, logger lager.Logger, guid, image, user string) (User, error)
	Create(ctx context.Context, logger lager.Logger, spec ContainerSpec) error
	// Delete removes task, container and snapshot; missing parts are fine.
	Delete(ctx context.Context, logger lager.Logger, guid string) error
	// List answers the containers this agent owns.
	List(ctx context.Context) ([]RuntimeContainer, error)
}

// TaskRunner runs and signals a container's main task.
type TaskRunner interface {
	// Start starts the task; the channel gets its exit.
	Start(ctx context.Context, logger lager.Logger, guid string) (<-chan Exit, error)
	// Attach re-attaches to a running task after an agent restart.
	Attach(ctx context.Context, logger lager.Logger, guid string) (<-chan Exit, error)
	Signal(ctx context.Context, guid string, sig syscall.Signal) error
	Ping(ctx context.Context) error
}

// ProcessSpec is an extra process run inside a container (the proxy).
type ProcessSpec struct {
	Path        string
	Args        []string
	Env         []string
	User        User
	LogPath     string
	LogMaxBytes int64
	// NoCapabilities runs the process with every capability set empty
	// (bounding included), whatever the container's process has.
	NoCapabilities bool
	// NoFile is the process's own RLIMIT_NOFILE (0: the container's).
	NoFile uint64
}

// ErrProcessNotRunning: a process that AttachExec was asked for exists
// but has exited; there is nothing to attach to.
var ErrProcessNotRunning = errors.New("process not running")

// ProcessRunner runs extra processes in a container's task.
type ProcessRunner interface {
	// Exec starts id in guid's task (replacing an exited process of the
	// same id) and answers its host pid and exit.
	Exec(ctx context.Context, logger lager.Logger, guid, id string, spec ProcessSpec) (uint32, <-chan Exit, error)
	// AttachExec re-attaches to a running process after an agent restart.
	// A process that is there but not running answers an error wrapping
	// ErrProcessNotRunning; one that is gone, executor.ErrContainerNotFound.
	AttachExec(ctx context.Context, logger lager.Logger, guid, id string) (uint32, <-chan Exit, error)
	SignalExec(ctx context.Context, guid, id string, sig syscall.Signal) error
}

// StrayShimCleaner is implemented by a ContainerRuntime that can find
// processes it started for containers it no longer has (containerd shims
// of an interrupted task creation). Recovery calls it after removing the
// orphans, before the API serves.
type StrayShimCleaner interface {
	// hadTask answers true for a container known to have a task (it is
	// then not asked of containerd again); false means "ask".
	CleanupStrayShims(ctx context.Context, logger lager.Logger, hadTask func(guid string) bool) error
}
