package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cellagent/cellagent/executor"
)

func (c *cli) state(ctx context.Context) error {
	st, err := c.client.State(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(st)
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "cell\t%s\tzone %s\tevacuating %v\tnats %s\n", st.CellID, st.Zone, st.Evacuating, st.NATS)
	fmt.Fprintf(w, "\tTOTAL\tAVAILABLE\n")
	fmt.Fprintf(w, "memory (MB)\t%d\t%d\n", st.Total.MemoryMB, st.Available.MemoryMB)
	fmt.Fprintf(w, "disk (MB)\t%d\t%d\n", st.Total.DiskMB, st.Available.DiskMB)
	fmt.Fprintf(w, "containers\t%d\t%d\n", st.Total.Containers, st.Available.Containers)
	fmt.Fprintf(w, "proxy overhead (MB)\t%d\t\n", st.ProxyMemoryOverheadMB)
	var parts []string
	for _, s := range executor.States {
		parts = append(parts, fmt.Sprintf("%s=%d", s, st.Containers[s.String()]))
	}
	fmt.Fprintf(w, "by state\t%s\t\n", strings.Join(parts, " "))
	printDiegoState(w, st.Diego)
	return w.Flush()
}

func (c *cli) list(ctx context.Context) error {
	cs, err := c.client.List(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(map[string]any{"containers": cs})
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "GUID\tSTATE\tROUTABLE\tMEMORY\tIP\tPORTS\tCERT EXPIRES\tRESULT")
	for _, ct := range cs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ct.GUID, ct.State, yesNo(ct.Routable),
			memory(ct), dash(ct.InternalIP), ports(ct.Ports), certExpiry(ct.Credentials), result(ct))
	}
	if len(cs) == 0 {
		fmt.Fprintln(w, "(no containers)")
	}
	return w.Flush()
}

func (c *cli) get(ctx context.Context, args []string) error {
	guid, err := oneGUID(args, "get")
	if err != nil {
		return err
	}
	ct, err := c.client.Get(ctx, guid)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(ct)
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(w, "%s\t%s\n", k, v) }
	row("guid", ct.GUID)
	row("state", ct.State.String())
	row("routable", yesNo(ct.Routable))
	row("image", dash(ct.Image))
	row("memory", memory(ct))
	row("memory limit", fmt.Sprintf("%d bytes", ct.MemoryLimitBytes))
	row("disk", fmt.Sprintf("%d MB", ct.Resources.DiskMB))
	row("external ip", dash(ct.ExternalIP))
	row("internal ip", dash(ct.InternalIP))
	for _, p := range ct.Ports {
		v := fmt.Sprintf("%d -> host %d", p.ContainerPort, p.HostPort)
		if p.HostTLSProxyPort != 0 {
			v += fmt.Sprintf("   tls %d -> host %d", p.ContainerTLSProxyPort, p.HostTLSProxyPort)
		}
		row("port", v)
	}
	for _, r := range ct.Routes {
		row("route", fmt.Sprintf("%s -> %d", strings.Join(r.Hostnames, ","), r.Port))
	}
	if cr := ct.Credentials; cr != nil {
		row("cert serial", cr.Serial)
		row("cert valid", fmt.Sprintf("%s .. %s (%d rotations)", cr.NotBefore.Format(time.RFC3339), cr.NotAfter.Format(time.RFC3339), cr.Rotations))
	}
	row("result", result(ct))
	row("created", ct.CreatedAt.Format(time.RFC3339))
	return w.Flush()
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func (c *cli) run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", "", "read the whole run request (JSON) from this file ('-' = stdin)")
	image := fs.String("image", "preloaded:busybox", "image: preloaded:NAME or a reference in containerd")
	mem := fs.Int("memory", 128, "memory in MB")
	disk := fs.Int("disk", 256, "disk in MB")
	user := fs.String("user", "", "process user (default: the agent's default_user)")
	index := fs.Int("index", 0, "instance index")
	logGUID := fs.String("log-guid", "", "log guid (the app)")
	checkHTTP := fs.String("check-http", "", "http readiness check PORT[/PATH]")
	checkTCP := fs.Int("check-tcp", 0, "tcp readiness check PORT")
	wait := fs.Bool("wait", true, "wait until the container is running or completed")
	var ports, routes, env stringList
	fs.Var(&ports, "port", "container port (repeatable)")
	fs.Var(&routes, "route", "route HOSTNAME[,HOSTNAME...]:PORT (repeatable)")
	fs.Var(&env, "env", "environment K=V (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: cellctl run GUID [flags] -- PATH [ARGS...]   or   cellctl run GUID -f request.json")
		fs.PrintDefaults()
	}
	if len(args) < 1 || strings.HasPrefix(args[0], "-") {
		fs.Usage()
		return usageError("GUID comes first")
	}
	guid := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return usageError(err.Error())
	}
	var req executor.RunRequest
	if *file != "" {
		var r io.Reader = os.Stdin
		if *file != "-" {
			f, err := os.Open(*file)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		if err := jsonDecodeStrict(r, &req); err != nil {
			return fmt.Errorf("read %s: %w", *file, err)
		}
	} else {
		if fs.NArg() == 0 {
			fs.Usage()
			return usageError("missing -- PATH [ARGS...]")
		}
		req = executor.RunRequest{Image: *image, Index: *index, LogGUID: *logGUID,
			Resources: &executor.Resources{MemoryMB: *mem, DiskMB: *disk},
			Process:   executor.Process{Path: fs.Arg(0), Args: fs.Args()[1:], Env: env, User: *user}}
		for _, p := range ports {
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil {
				return usageError(fmt.Sprintf("--port %q: not a port", p))
			}
			req.Ports = append(req.Ports, uint16(n))
		}
		for _, r := range routes {
			hosts, port, ok := strings.Cut(r, ":")
			n, err := strconv.ParseUint(port, 10, 16)
			if !ok || err != nil {
				return usageError(fmt.Sprintf("--route %q: want HOSTNAME[,HOSTNAME...]:PORT", r))
			}
			req.Routes = append(req.Routes, executor.Route{Hostnames: strings.Split(hosts, ","), Port: uint16(n)})
		}
		if *checkHTTP != "" {
			port, path, _ := strings.Cut(*checkHTTP, "/")
			n, err := strconv.ParseUint(port, 10, 16)
			if err != nil {
				return usageError(fmt.Sprintf("--check-http %q: want PORT[/PATH]", *checkHTTP))
			}
			req.Check = &executor.Check{HTTP: &executor.HTTPCheck{Port: uint16(n), Path: "/" + path}}
		} else if *checkTCP != 0 {
			req.Check = &executor.Check{TCP: &executor.TCPCheck{Port: uint16(*checkTCP)}}
		}
	}
	ct, err := c.client.AllocateAndRun(ctx, guid, req)
	if err != nil {
		return err
	}
	if *wait {
		if ct, err = waitSettled(ctx, c.client, guid); err != nil {
			return err
		}
	}
	if c.json {
		return c.printJSON(ct)
	}
	fmt.Fprintf(c.out, "%s %s", ct.GUID, ct.State)
	if ct.State == executor.StateCompleted {
		fmt.Fprintf(c.out, " (%s)", result(ct))
	}
	fmt.Fprintln(c.out)
	if ct.State == executor.StateCompleted && ct.RunResult.Failed {
		return fmt.Errorf("container %s failed: %s; see cellctl logs %s", guid, ct.RunResult.FailureReason, guid)
	}
	return nil
}

// waitSettled polls until guid is running or completed.
func waitSettled(ctx context.Context, client executor.Client, guid string) (executor.Container, error) {
	for {
		ct, err := client.Get(ctx, guid)
		if err != nil || ct.State == executor.StateRunning || ct.State == executor.StateCompleted {
			return ct, err
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return ct, ctx.Err()
		}
	}
}

func (c *cli) stop(ctx context.Context, args []string) error {
	guid, err := oneGUID(args, "stop")
	if err != nil {
		return err
	}
	if err := c.client.Stop(ctx, guid); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%s stopped\n", guid)
	return nil
}

func (c *cli) delete(ctx context.Context, args []string) error {
	guid, err := oneGUID(args, "delete")
	if err != nil {
		return err
	}
	if err := c.client.Delete(ctx, guid); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%s deleted\n", guid)
	return nil
}

func (c *cli) events(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	follow := fs.Bool("follow", false, "keep streaming new events")
	fs.BoolVar(follow, "f", false, "short for --follow")
	since := fs.Uint64("since", 0, "only events after this sequence number")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if err := noArgs(fs.Args(), "events [--follow] [--since N]"); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	evs, err := c.client.Events(ctx, *since)
	if err != nil {
		return err
	}
	idle := time.Duration(0)
	if !*follow {
		idle = 300 * time.Millisecond // the buffer arrives at once; stop when it is drained
	}
	last := *since
	for {
		var timeout <-chan time.Time
		if idle > 0 {
			timeout = time.After(idle)
		}
		select {
		case ev, ok := <-evs:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("event stream closed by the agent; resume with --since %d", last)
			}
			if ev.Type == executor.EventStreamEnded {
				return fmt.Errorf("agent shut down; the event stream ended (resume with --since %d)", ev.Seq)
			}
			last = max(last, ev.Seq)
			c.printEvent(ev)
		case <-timeout:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

func (c *cli) printEvent(ev executor.Event) {
	if c.json {
		_ = c.printJSON(ev)
		return
	}
	line := fmt.Sprintf("%d  %s  %-28s %s", ev.Seq, ev.Time.Format("15:04:05.000"), ev.Type, ev.GUID)
	if ev.Container != nil && ev.Type == executor.EventContainerState {
		line += "  -> " + ev.Container.State.String()
	}
	if ev.Message != "" {
		line += "  " + ev.Message
	}
	if ev.Container != nil {
		if id := diegoIdentity(ev.GUID, ev.Container.Tags); id != "" {
			line += "  [" + id + "]"
		}
	}
	fmt.Fprintln(c.out, line)
}

func (c *cli) logs(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("logs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	follow := fs.Bool("follow", false, "keep streaming new output")
	fs.BoolVar(follow, "f", false, "short for --follow")
	source := fs.String("source", executor.LogSourceAll, "all (app and proxy, lines tagged), app or proxy")
	raw := fs.Bool("raw", false, "print control characters as they are, even to a terminal")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	guid, err := oneGUID(fs.Args(), "logs [--follow] [--source all|app|proxy] [--raw]")
	if err != nil {
		return err
	}
	if err := executor.ValidateLogSource(*source); err != nil {
		return usageError(err.Error())
	}
	rc, err := c.client.Logs(ctx, guid, executor.LogOptions{Follow: *follow, Source: *source})
	if err != nil {
		return err
	}
	defer rc.Close()
	out := c.out
	// An app's output is the app's: on a terminal its escape sequences
	// are shown, not obeyed.
	if f, ok := c.out.(*os.File); ok && !*raw && isTerminal(f) {
		ew := &escapeWriter{w: c.out}
		defer ew.Flush()
		out = ew
	}
	_, err = io.Copy(out, rc)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func memory(ct executor.Container) string {
	s := fmt.Sprintf("%dM", ct.Resources.MemoryMB)
	if ct.Memory != nil {
		s = fmt.Sprintf("%s (app %s, proxy %s)", s, mib(ct.Memory.AppBytes), mib(ct.Memory.ProxyBytes))
	}
	return s
}

func mib(b uint64) string { return fmt.Sprintf("%.1fM", float64(b)/(1<<20)) }

func ports(ps []executor.PortMapping) string {
	if len(ps) == 0 {
		return "-"
	}
	var out []string
	for _, p := range ps {
		s := fmt.Sprintf("%d:%d", p.HostPort, p.ContainerPort)
		if p.HostTLSProxyPort != 0 {
			s += fmt.Sprintf(",tls %d:%d", p.HostTLSProxyPort, p.ContainerTLSProxyPort)
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func certExpiry(cr *executor.CredentialInfo) string {
	if cr == nil {
		return "-"
	}
	return "in " + time.Until(cr.NotAfter).Round(time.Second).String()
}

func result(ct executor.Container) string {
	r := ct.RunResult
	switch {
	case ct.State != executor.StateCompleted:
		return "-"
	case r.Stopped:
		return "stopped"
	case r.Failed:
		return "failed: " + r.FailureReason
	}
	return "exited"
}
