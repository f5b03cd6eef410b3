package adapters

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/downloads"
	"github.com/cellagent/cellagent/executor"
)

// Downloads is the store's Downloads step over the download cache: a
// request's cached dependencies become read-only mounts of the cache's
// extracted trees, and its setup runs into the container's writable
// rootfs (Rootfs) before the process starts. Teardown releases the trees
// the container held.
type Downloads struct {
	Cache *downloads.Cache
	// Rootfs opens a prepared container's filesystem (the runtime); nil:
	// a request with a setup fails.
	Rootfs containerstore.RootfsWriter
	// Limits bound one archive's extraction; a setup's also stays within
	// the container's disk_mb.
	Limits downloads.Limits
	// Limiter bounds the downloads running at once on the cell.
	Limiter chan struct{}
	// Log opens the instance's log for the progress messages.
	Log func(guid string) (io.WriteCloser, error)
}

var (
	_ containerstore.SetupStep[containerstore.DownloadsResult] = (*Downloads)(nil)
	_ containerstore.OrphanCleaner                             = (*Downloads)(nil)
)

func (d *Downloads) Name() string { return "downloads" }

func (d *Downloads) Setup(ctx context.Context, logger lager.Logger, inst containerstore.Instance) (_ containerstore.DownloadsResult, retErr error) {
	req := &inst.Request
	if req.Setup == nil && len(req.CachedDependencies) == 0 {
		return containerstore.DownloadsResult{}, nil
	}
	logger = logger.Session("downloads")
	log := io.Writer(io.Discard)
	if d.Log != nil {
		if w, err := d.Log(inst.GUID); err != nil {
			logger.Error("open-log", err)
		} else {
			defer w.Close()
			log = w
		}
	}
	defer func() {
		if retErr != nil {
			_ = d.Cache.Release(inst.GUID)
		}
	}()
	runner := &downloads.Runner{Cache: d.Cache, Log: log, Limiter: d.Limiter}
	mounts, err := d.cachedDependencies(ctx, logger, inst.GUID, req.CachedDependencies, runner)
	if err != nil {
		return containerstore.DownloadsResult{}, err
	}
	if req.Setup != nil {
		if d.Rootfs == nil {
			return containerstore.DownloadsResult{}, errors.New("this agent's runtime cannot write into a container's filesystem: setup is not supported")
		}
		lim := d.Limits
		if disk := int64(inst.DiskMB) << 20; disk > 0 && disk < lim.MaxBytes {
			lim.MaxBytes = disk
		}
		// The setup's downloads, parallel ones too, share one bound.
		lim.Shared = downloads.NewBudget(lim.MaxBytes)
		err := d.Rootfs.WriteRootfs(ctx, inst.GUID, func(root *os.Root, users containerstore.UserLookup) error {
			runner.Target = &rootfsTarget{root: root, users: users, defaultUser: req.Process.User, limits: lim}
			return runner.Run(ctx, logger, req.Setup)
		})
		if err != nil {
			return containerstore.DownloadsResult{}, err
		}
	}
	return containerstore.DownloadsResult{Mounts: mounts}, nil
}

// cachedDependencies fetches the dependencies at once (as Diego's
// dependency manager does), with Diego's log lines for the named ones.
func (d *Downloads) cachedDependencies(ctx context.Context, logger lager.Logger, guid string, deps []executor.CachedDependency,
	r *downloads.Runner) ([]containerstore.Mount, error) {
	mounts := make([]containerstore.Mount, len(deps))
	errs := make([]error, len(deps))
	var wg sync.WaitGroup
	for i, dep := range deps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d.Limiter != nil {
				select {
				case d.Limiter <- struct{}{}:
					defer func() { <-d.Limiter }()
				case <-ctx.Done():
					errs[i] = ctx.Err()
					return
				}
			}
			if dep.Name != "" {
				r.Emit("Downloading %s...\n", dep.Name)
			}
			lim := d.Limits
			tree, size, err := d.Cache.FetchTree(ctx, logger, guid, downloads.Source{URL: dep.From, CacheKey: dep.CacheKey, Checksum: dep.Checksum},
				func(ctx context.Context, f *os.File, root *os.Root) (int64, error) {
					return downloads.Extract(ctx, f, root, nil, lim)
				})
			name := dep.Name
			if name == "" {
				name = dep.CacheKey
			}
			if err != nil {
				errs[i] = fmt.Errorf("downloading %s failed: %w", name, err)
				if dep.Name != "" {
					r.Emit("Downloading %s failed\n", dep.Name)
				}
				return
			}
			if dep.Name != "" {
				r.Emit("%s\n", downloads.Downloaded(dep.Name, size))
			}
			mounts[i] = containerstore.Mount{Source: tree, Destination: dep.To, ReadOnly: true}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		logger.Error("cached-dependencies-failed", err)
		return nil, err
	}
	return mounts, nil
}

func (d *Downloads) Teardown(_ context.Context, _ lager.Logger, guid string) error {
	return d.Cache.Release(guid)
}

func (d *Downloads) CleanupOrphans(_ context.Context, _ lager.Logger, keep func(guid string) bool) error {
	return d.Cache.ReleaseUnless(keep)
}

// rootfsTarget extracts setup downloads into a container's mounted rootfs.
type rootfsTarget struct {
	root        *os.Root
	users       containerstore.UserLookup
	defaultUser string
	limits      downloads.Limits // Shared: the whole setup's bound
}

func (t *rootfsTarget) Extract(ctx context.Context, d *executor.DownloadAction, a *downloads.Artifact) error {
	name := d.User
	if name == "" {
		name = t.defaultUser
	}
	u, err := t.users(name)
	if err != nil {
		return fmt.Errorf("user %q: %w", name, err)
	}
	to, err := executor.DownloadTarget(d.To, u.Home)
	if err != nil {
		return err
	}
	owner := &downloads.Owner{UID: int(u.UID), GID: int(u.GID)}
	rel := strings.TrimPrefix(to, "/")
	if rel == "" {
		rel = "."
	}
	if err := downloads.MkdirAll(t.root, rel, owner); err != nil {
		return fmt.Errorf("make %s: %w", to, err)
	}
	dir, err := t.root.OpenRoot(rel)
	if err != nil {
		return fmt.Errorf("open %s: %w", to, err)
	}
	defer dir.Close()
	_, err = downloads.Extract(ctx, a.File, dir, owner, t.limits)
	return err
}
