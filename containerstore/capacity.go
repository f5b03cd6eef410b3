package containerstore

import (
	"fmt"
	"strings"

	"github.com/cellagent/cellagent/executor"
)

// capacity tracks what the cell has and what reservations hold. It is not
// safe for concurrent use: Store.mu guards it.
type capacity struct {
	total executor.ResourceTotals
	used  executor.ResourceTotals
}

// need is what one container takes: its memory plus the proxy overhead.
func (c *capacity) need(r executor.Resources, overheadMB int) executor.ResourceTotals {
	return executor.ResourceTotals{MemoryMB: r.MemoryMB + overheadMB, DiskMB: r.DiskMB, Containers: 1}
}

func (c *capacity) available() executor.ResourceTotals {
	return executor.ResourceTotals{
		MemoryMB:   c.total.MemoryMB - c.used.MemoryMB,
		DiskMB:     c.total.DiskMB - c.used.DiskMB,
		Containers: c.total.Containers - c.used.Containers,
	}
}

// reserve takes n or says which resources are short.
func (c *capacity) reserve(n executor.ResourceTotals) error {
	a := c.available()
	var short []string
	if n.MemoryMB > a.MemoryMB {
		short = append(short, fmt.Sprintf("memory (need %d MB, %d MB free of %d MB)", n.MemoryMB, a.MemoryMB, c.total.MemoryMB))
	}
	if n.DiskMB > a.DiskMB {
		short = append(short, fmt.Sprintf("disk (need %d MB, %d MB free of %d MB)", n.DiskMB, a.DiskMB, c.total.DiskMB))
	}
	if n.Containers > a.Containers {
		short = append(short, fmt.Sprintf("containers (all %d slots taken)", c.total.Containers))
	}
	if len(short) > 0 {
		return executor.NewError(executor.ErrInsufficientResources, "insufficient resources: %s", strings.Join(short, ", "))
	}
	c.used.MemoryMB += n.MemoryMB
	c.used.DiskMB += n.DiskMB
	c.used.Containers += n.Containers
	return nil
}

func (c *capacity) release(n executor.ResourceTotals) {
	c.used.MemoryMB -= n.MemoryMB
	c.used.DiskMB -= n.DiskMB
	c.used.Containers -= n.Containers
}

// maxPids is an instance's pids limit: the request's, else the cell's
// default, so that no instance can fork until the host's pid space or the
// agent's own threads run out.
func (s *Store) maxPids(res executor.Resources) int64 {
	if res.MaxPids > 0 {
		return int64(res.MaxPids)
	}
	return int64(s.cfg.DefaultMaxPids)
}
