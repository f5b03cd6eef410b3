package containerstore

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/executor"
)

// disk_mb is enforced the way kubelet enforces ephemeral-storage: every
// diskCheckEvery health intervals a running instance's writable layer
// (Deps.DiskUsage) and its log files are measured, and an instance over its disk_mb is failed
// with DiskLimitExceeded. Without it an app could fill the filesystem under
// containerd and data_dir, and every instance's records, rotations and
// logs would then fail.

// diskCheckEvery is how many health rounds pass between two disk checks of
// an instance: once a minute at the default 30 s interval. The check is a
// containerd round trip and a walk of the log directory per instance, about
// a fifth of an idle agent's CPU when it ran every round (250 instances,
// BENCHMARKS.md idle profile).
const diskCheckEvery = 2

// DiskLimitExceeded starts the failure reason of an instance stopped for
// writing past its disk_mb.
const DiskLimitExceeded = "disk limit exceeded"

// checkDisk fails c when its disk use is over its disk_mb.
func (s *Store) checkDisk(logger lager.Logger, c *container) {
	if s.deps.DiskUsage == nil {
		return
	}
	s.mu.Lock()
	guid, limitMB, state, stopping := c.info.GUID, c.info.Resources.DiskMB, c.info.State, c.stopping
	s.mu.Unlock()
	if limitMB <= 0 || stopping || state != executor.StateRunning {
		return
	}
	ctx, cancel := context.WithTimeout(s.rootCtx, 10*time.Second)
	defer cancel()
	layer, err := s.deps.DiskUsage(ctx, guid)
	if err != nil {
		logger.Info("disk-usage-unknown", lager.Data{errorKey: err.Error()})
		return
	}
	used := layer + dirBytes(filepath.Dir(s.logPath(guid)))
	if limit := int64(limitMB) << 20; used > limit {
		reason := fmt.Sprintf("%s: %d MiB written (writable layer and logs), disk_mb is %d", DiskLimitExceeded, used>>20, limitMB)
		logger.Info("disk-limit-exceeded", lager.Data{"used-bytes": used, "limit-bytes": limit})
		s.fail(c, executor.FailureDiskLimit, reason)
	}
}

// dirBytes answers the allocated size of the files under dir.
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// diskLow answers data_dir's free space in MB and whether it is under the
// reserve (never low when the reserve is 0 or statfs fails).
func (s *Store) diskLow() (int64, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.cfg.DataDir, &st); err != nil {
		return 0, false
	}
	free := int64(st.Bavail) * st.Bsize >> 20
	return free, s.cfg.DiskReserveMB > 0 && free < int64(s.cfg.DiskReserveMB)
}
