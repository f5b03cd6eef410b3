package main

import (
	"fmt"
	"io"
	"path/filepath"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/containerstore/runtime"
	"github.com/cellagent/cellagent/downloads"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/adapters"
	"github.com/cellagent/cellagent/logfile"
)

// newDownloadsHook opens the download cache in data_dir/downloads and
// binds it, with the runtime that writes into containers' filesystems,
// as the pipeline's Downloads step.
func newDownloadsHook(logger lager.Logger, cfg config.Config, rt *runtime.Client, clk clock.Clock) (*adapters.Downloads, error) {
	d := cfg.Downloads
	cache, err := downloads.New(logger.Session("downloads"), downloads.Config{Dir: filepath.Join(cfg.DataDir, "downloads"),
		MaxBytes: int64(d.CacheMB) << 20, MaxArtifactBytes: int64(d.MaxArtifactMB) << 20, Clock: clk})
	if err != nil {
		return nil, fmt.Errorf("download cache: %w", err)
	}
	return &adapters.Downloads{Cache: cache, Rootfs: rt, Limiter: make(chan struct{}, d.MaxConcurrent),
		Limits: downloads.Limits{MaxBytes: int64(d.MaxArtifactMB) << 20, MaxEntries: 1 << 20},
		Log: func(guid string) (io.WriteCloser, error) {
			return logfile.OpenCapped(containerstore.LogPath(cfg.DataDir, guid, executor.LogSourceApp), cfg.LogMaxBytes)
		}}, nil
}
