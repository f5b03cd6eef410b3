package network

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

//go:generate go tool counterfeiter -o networkfakes/fake_cpu.go . CPU

// CPU tells the pool's refill whether the host's CPUs are busy: preparing a
// namespace runs the bridge and host-local CNI plugins (a process each),
// which on a busy host take CPU from the very starts the pool exists to
// speed up. It measures the whole host, tenants' apps included.
type CPU interface {
	// Busy measures the CPUs for a short while and answers whether less
	// than half of their time was idle. It answers false when it cannot
	// tell (the refill then runs, as it would without a meter).
	Busy(ctx context.Context) bool
}

// ProcStatCPU is CPU from the aggregate "cpu" line of /proc/stat, over a
// window of real time (not the agent's clock: it measures the real CPUs).
type ProcStatCPU struct {
	// Path is /proc/stat unless a test says otherwise.
	Path string
	// Window is how long Busy measures; 0 means 100 ms (20 ticks of
	// USER_HZ 100 on two CPUs, enough to tell half idle from saturated).
	Window time.Duration
}

var _ CPU = ProcStatCPU{}

// busyIdleShare: below this share of idle CPU time the host is busy.
const busyIdleShare = 0.5

// Busy implements CPU.
func (c ProcStatCPU) Busy(ctx context.Context) bool {
	share, ok := c.IdleShare(ctx)
	return ok && share < busyIdleShare
}

// IdleShare measures the CPUs for Window and answers the share of their
// time that was idle (idle + iowait); ok is false when it cannot tell (an
// unreadable file, ctx ended, no tick passed, counters that went back).
func (c ProcStatCPU) IdleShare(ctx context.Context) (share float64, ok bool) {
	window := c.Window
	if window <= 0 {
		window = 100 * time.Millisecond
	}
	idle0, total0, err := c.read()
	if err != nil {
		return 0, false
	}
	t := time.NewTimer(window)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return 0, false
	case <-t.C:
	}
	idle1, total1, err := c.read()
	if err != nil {
		return 0, false
	}
	return idleBetween(idle0, total0, idle1, total1)
}

// busyBetween says whether less than busyIdleShare of the CPU time between
// two readings was idle; false when it cannot tell (idleBetween).
func busyBetween(idle0, total0, idle1, total1 uint64) bool {
	share, ok := idleBetween(idle0, total0, idle1, total1)
	return ok && share < busyIdleShare
}

// idleBetween answers the share of the CPU time between two readings that
// was idle; ok is false when no time passed or the counters went back.
func idleBetween(idle0, total0, idle1, total1 uint64) (share float64, ok bool) {
	if total1 <= total0 || idle1 < idle0 || idle1-idle0 > total1-total0 {
		return 0, false
	}
	return float64(idle1-idle0) / float64(total1-total0), true
}

// read answers the idle (idle + iowait) and total ticks of all CPUs.
func (c ProcStatCPU) read() (idle, total uint64, err error) {
	path := c.Path
	if path == "" {
		path = "/proc/stat"
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", path, err)
	}
	return parseCPULine(line)
}

// parseCPULine reads "cpu  user nice system idle iowait irq softirq steal
// guest guest_nice". guest and guest_nice are already counted in user and
// nice, so they are left out of the total.
func parseCPULine(line string) (idle, total uint64, err error) {
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("not an aggregate cpu line: %q", strings.TrimSpace(line))
	}
	for i, f := range fields[1:] {
		if i >= 8 {
			break
		}
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("cpu line field %d: %w", i+1, err)
		}
		total += v
		if i == 3 || i == 4 {
			idle += v
		}
	}
	return idle, total, nil
}
