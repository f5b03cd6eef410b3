package downloads

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
)

// Target is where a setup's downloads go: the container's filesystem.
type Target interface {
	// Extract extracts the artifact for the download d into the container.
	Extract(ctx context.Context, d *executor.DownloadAction, a *Artifact) error
}

// Runner runs a run request's setup tree with Diego's semantics.
type Runner struct {
	Cache  *Cache
	Target Target
	// Log is the instance's log: download and emit_progress messages go
	// there, as Diego streams them to the app's log.
	Log io.Writer
	// Limiter bounds the downloads running at once on the cell (Diego's
	// download rate limiter); nil: no bound.
	Limiter chan struct{}

	logMu sync.Mutex // guards writes to Log from parallel actions
}

// Run runs a, answering the first failure (of a serial) or all of them
// (of a parallel); a try's failure is logged and ignored.
func (r *Runner) Run(ctx context.Context, logger lager.Logger, a *executor.SetupAction) error {
	switch {
	case a.Download != nil:
		return r.download(ctx, logger, a.Download)
	case a.Serial != nil:
		for i := range a.Serial {
			if err := r.Run(ctx, logger, &a.Serial[i]); err != nil {
				return err
			}
		}
		return nil
	case a.Parallel != nil:
		errs := make([]error, len(a.Parallel))
		var wg sync.WaitGroup
		for i := range a.Parallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = r.Run(ctx, logger, &a.Parallel[i])
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	case a.Try != nil:
		if err := r.Run(ctx, logger, a.Try); err != nil {
			if ctx.Err() != nil {
				return err // cancelled: not the try's to ignore
			}
			logger.Info("try-failed-ignored", lager.Data{"error": err.Error()})
		}
		return nil
	case a.Timeout != nil:
		return r.timeout(ctx, logger, a.Timeout)
	case a.EmitProgress != nil:
		e := a.EmitProgress
		if e.StartMessage != "" {
			r.Emit("%s\n", e.StartMessage)
		}
		err := r.Run(ctx, logger, &e.Action)
		switch {
		case err != nil && e.FailureMessagePrefix != "":
			r.Emit("%s: %v\n", e.FailureMessagePrefix, err)
		case err == nil && e.SuccessMessage != "":
			r.Emit("%s\n", e.SuccessMessage)
		}
		return err
	}
	return errors.New("empty setup action")
}

// timeout runs t's action under a deadline of the cache's clock.
func (r *Runner) timeout(ctx context.Context, logger lager.Logger, t *executor.TimeoutAction) error {
	d := time.Duration(t.Timeout)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := r.Cache.cfg.Clock.NewTimer(d)
	defer timer.Stop()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, logger, &t.Action) }()
	select {
	case err := <-done:
		return err
	case <-timer.C():
		cancel(fmt.Errorf("exceeded %s timeout", d))
		// Downloads end with their context, failing with its cause; an
		// action that finished meanwhile keeps its result.
		return <-done
	}
}

func (r *Runner) download(ctx context.Context, logger lager.Logger, d *executor.DownloadAction) error {
	name := d.Artifact
	if name == "" {
		name = redact(d.From)
	}
	logger = logger.Session("download", lager.Data{"from": redact(d.From), "cache-key": d.CacheKey})
	if r.Limiter != nil {
		select {
		case r.Limiter <- struct{}{}:
			defer func() { <-r.Limiter }()
		case <-ctx.Done():
			// As a download the context ended says it (a timeout that
			// fired while this one waited for its turn included).
			return r.failed(logger, d, fmt.Errorf("downloading %s failed: %w", name, context.Cause(ctx)))
		}
	}
	if d.Artifact != "" {
		r.Emit("Downloading %s...\n", name)
	}
	a, err := r.Cache.Fetch(ctx, logger, Source{URL: d.From, CacheKey: d.CacheKey, Checksum: d.Checksum})
	if err != nil {
		if c := context.Cause(ctx); c != nil {
			err = c
		}
		return r.failed(logger, d, fmt.Errorf("downloading %s failed: %w", name, err))
	}
	defer a.Close()
	if err := r.Target.Extract(ctx, d, a); err != nil {
		return r.failed(logger, d, fmt.Errorf("copying %s into the container failed: %w", name, err))
	}
	logger.Info("downloaded", lager.Data{"bytes": a.Size, "cached": a.Cached})
	if d.Artifact != "" {
		size := a.Size
		if a.Cached {
			size = 0
		}
		r.Emit("%s\n", Downloaded(d.Artifact, size))
	}
	return nil
}

func (r *Runner) failed(logger lager.Logger, d *executor.DownloadAction, err error) error {
	logger.Error("download-failed", err)
	if d.Artifact != "" {
		r.Emit("%v\n", err)
	}
	return err
}

// Emit writes a message to the instance's log.
func (r *Runner) Emit(format string, args ...any) {
	if r.Log == nil {
		return
	}
	r.logMu.Lock()
	defer r.logMu.Unlock()
	fmt.Fprintf(r.Log, format, args...)
}

// Downloaded is Diego's log line for a finished download of size bytes
// (0: nothing was downloaded, the cache had it).
func Downloaded(name string, size int64) string {
	if size == 0 {
		return "Downloaded " + name
	}
	return fmt.Sprintf("Downloaded %s (%s)", name, byteSize(size))
}

// byteSize is n in the largest unit that keeps it at least 1 (Diego's
// bytefmt: "12.3M").
func byteSize(n int64) string {
	units := []string{"B", "K", "M", "G", "T"}
	v := float64(n)
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%dB", n)
	}
	return fmt.Sprintf("%.1f%s", v, units[i])
}
