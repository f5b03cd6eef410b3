// Command cellbench measures cellagent's start latency against raw
// containerd on this machine, in one run, and prints a table:
//
//	raw      containerd create+start of the same rootfs (the adapter's
//	         calls, no agent), then delete
//	host     PUT -> running through the agent, host network, no proxy
//	bridge   PUT -> running, bridge networking (CNI), no proxy
//	proxy    PUT -> running and PUT -> routable, bridge + credentials + proxy
//
// Each mode runs -n sequential starts (each followed by a delete) and
// reports the median and p90. Needs root and the private containerd
// (scripts/lib.sh start_containerd); run it through scripts/bench.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/containerstore/runtime"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

func main() {
	n := flag.Int("n", 20, "sequential starts per mode")
	flag.Parse()
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "cellbench:", err)
		os.Exit(1)
	}
}

type result struct {
	name    string
	samples []time.Duration
}

func (r result) pct(p float64) time.Duration {
	s := append([]time.Duration{}, r.samples...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	return s[int(float64(len(s)-1)*p+0.5)]
}

func run(n int) error {
	dir, err := os.MkdirTemp("", "cellbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var results []result

	fmt.Fprintf(os.Stderr, "raw containerd create+start x%d ...\n", n)
	raw, err := benchRaw(dir, n)
	if err != nil {
		return fmt.Errorf("raw: %w", err)
	}
	results = append(results, raw)

	modes := []struct {
		name     string
		modify   func(*config.Config)
		routable bool
	}{
		{"agent host network: PUT -> running", func(c *config.Config) {}, false},
		{"agent bridge (CNI): PUT -> running", func(c *config.Config) { bridge(c) }, false},
		{"agent bridge + identity + proxy: PUT -> running", func(c *config.Config) { bridge(c); c.Proxy.Enabled = true }, false},
		{"agent bridge + identity + proxy: PUT -> routable", func(c *config.Config) { bridge(c); c.Proxy.Enabled = true }, true},
	}
	for i, m := range modes {
		fmt.Fprintf(os.Stderr, "%s x%d ...\n", m.name, n)
		r, err := benchAgent(fmt.Sprintf("%s/agent%d", dir, i), m.name, n, m.modify, m.routable)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		results = append(results, r)
	}

	base := results[0].pct(0.5)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "MODE\tN\tMEDIAN\tP90\tMEDIAN / RAW\tMEDIAN - RAW\n")
	for _, r := range results {
		med := r.pct(0.5)
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%.2fx\t%s\n", r.name, len(r.samples), med.Round(time.Millisecond),
			r.pct(0.9).Round(time.Millisecond), float64(med)/float64(base), (med - base).Round(time.Millisecond))
	}
	return w.Flush()
}

func bridge(c *config.Config) {
	c.Network.Mode = "bridge"
	c.Network.Name = "cellagentbn"
	c.Network.Bridge = "cellagentbn0"
	c.Network.Subnet = "10.254.110.0/24"
	c.Network.HostPortRange = "47000-47999"
	c.Network.PortQuarantine = 0
}

func request(port int) executor.RunRequest {
	return executor.RunRequest{
		Image:     "preloaded:busybox",
		Resources: &executor.Resources{MemoryMB: 64, DiskMB: 64},
		Process:   executor.Process{Path: "/app/server", Args: []string{fmt.Sprint(port)}},
		Ports:     []uint16{uint16(port)},
		Check:     &executor.Check{TCP: &executor.TCPCheck{Port: uint16(port)}},
		StopGrace: executor.Duration(2 * time.Second),
	}
}

// benchRaw times Prepare+Create+Start of the adapter against containerd,
// as an agent-less baseline (the process is started; nothing waits for it
// to listen).
func benchRaw(dir string, n int) (result, error) {
	bins, err := testagent.BinDir()
	if err != nil {
		return result{}, err
	}
	rootfs := dir + "/rootfs"
	if err := testagent.MakeRootfs(rootfs, bins+"/demo-app"); err != nil {
		return result{}, err
	}
	rt, err := runtime.New(runtime.Config{Socket: testagent.Socket(), Namespace: "cellbench-raw", CellID: "cellbench",
		Preloaded: map[string]string{"busybox": rootfs}})
	if err != nil {
		return result{}, err
	}
	defer rt.Close()
	logger := lager.NewLogger("cellbench")
	ctx := context.Background()
	r := result{name: "raw containerd create+start (no agent)"}
	for i := 0; i < n+1; i++ { // the first run imports the rootfs: not counted
		guid := fmt.Sprintf("raw-%d", i)
		start := time.Now()
		user, err := rt.Prepare(ctx, logger, guid, "preloaded:busybox", "vcap")
		if err == nil {
			err = rt.Create(ctx, logger, containerstore.ContainerSpec{GUID: guid, Path: "/app/server", Args: []string{"18999"},
				User: user, MemoryLimitBytes: 64 << 20, Hostname: guid})
		}
		if err == nil {
			_, err = rt.Start(ctx, logger, guid)
		}
		took := time.Since(start)
		if derr := rt.Delete(ctx, logger, guid); err == nil {
			err = derr
		}
		if err != nil {
			return r, err
		}
		if i > 0 {
			r.samples = append(r.samples, took)
		}
	}
	return r, nil
}

func benchAgent(dir, name string, n int, modify func(*config.Config), routable bool) (result, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return result{}, err
	}
	agent, err := testagent.New(dir, fmt.Sprintf("bench%d", time.Now().UnixNano()%100000), func(c *config.Config) {
		c.LogLevel = "info"
		modify(c)
	})
	if err != nil {
		return result{}, err
	}
	if err := agent.Start(); err != nil {
		return result{}, err
	}
	defer agent.Cleanup()
	ctx := context.Background()
	r := result{name: name}
	for i := 0; i < n+1; i++ {
		guid := fmt.Sprintf("b-%d", i)
		port, _ := testagent.FreePort()
		evCtx, cancel := context.WithCancel(ctx)
		evs, err := agent.Client.Events(evCtx, agent.LastSeq(ctx))
		if err != nil {
			cancel()
			return r, err
		}
		start := time.Now()
		if _, err := agent.Client.AllocateAndRun(ctx, guid, request(port)); err != nil {
			cancel()
			return r, err
		}
		took, err := waitFor(evs, guid, routable)
		cancel()
		if err != nil {
			return r, fmt.Errorf("%s: %w\n%s", guid, err, agent.LogText())
		}
		if err := agent.Client.Delete(ctx, guid); err != nil {
			return r, err
		}
		if i > 0 {
			r.samples = append(r.samples, took.Sub(start))
		}
	}
	return r, nil
}

// waitFor answers when guid became running (or routable).
func waitFor(evs <-chan executor.Event, guid string, routable bool) (time.Time, error) {
	timeout := time.After(60 * time.Second)
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				return time.Time{}, fmt.Errorf("event stream closed")
			}
			if ev.GUID != guid || ev.Container == nil {
				continue
			}
			if ev.Container.State == executor.StateCompleted {
				return time.Time{}, fmt.Errorf("completed: %s", ev.Container.RunResult.FailureReason)
			}
			if routable && ev.Type == executor.EventContainerRoutable && ev.Container.Routable {
				return time.Now(), nil
			}
			if !routable && ev.Type == executor.EventContainerState && ev.Container.State == executor.StateRunning {
				return time.Now(), nil
			}
		case <-timeout:
			return time.Time{}, fmt.Errorf("not there within 60s")
		}
	}
}
