package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// watch redraws a live table of instances until interrupted.
func (c *cli) watch(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	interval := fs.Duration("interval", 2*time.Second, "refresh interval")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if err := noArgs(fs.Args(), "watch [--interval 2s]"); err != nil {
		return err
	}
	if *interval < 200*time.Millisecond {
		return usageError("--interval must be at least 200ms")
	}
	for {
		st, err := c.client.State(ctx)
		if err != nil {
			return err
		}
		cs, err := c.client.List(ctx)
		if err != nil {
			return err
		}
		fmt.Fprint(c.out, "\033[H\033[2J") // home + clear
		fmt.Fprintf(c.out, "cell %s  zone %s  nats %s  evacuating %v  memory free %d/%d MB  slots free %d/%d   %s\n\n",
			st.CellID, st.Zone, st.NATS, st.Evacuating, st.Available.MemoryMB, st.Total.MemoryMB,
			st.Available.Containers, st.Total.Containers, time.Now().Format("15:04:05"))
		w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "GUID\tSTATE\tROUTABLE\tMEM APP\tMEM PROXY\tLIMIT\tCERT EXPIRES\tROTATIONS\tRESULT")
		for _, ct := range cs {
			app, proxy := "-", "-"
			if ct.Memory != nil {
				app, proxy = mib(ct.Memory.AppBytes), mib(ct.Memory.ProxyBytes)
			}
			rot := "-"
			if ct.Credentials != nil {
				rot = fmt.Sprint(ct.Credentials.Rotations)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ct.GUID, ct.State, yesNo(ct.Routable), app, proxy,
				mib(ct.MemoryLimitBytes), certExpiry(ct.Credentials), rot, result(ct))
		}
		if len(cs) == 0 {
			fmt.Fprintln(w, "(no containers)")
		}
		_ = w.Flush()
		select {
		case <-time.After(*interval):
		case <-ctx.Done():
			return nil
		}
	}
}
