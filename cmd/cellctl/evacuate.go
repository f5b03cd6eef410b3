package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/cellagent/cellagent/executor"
)

// evacuate starts an evacuation and, with --wait, shows progress until no
// instance is left (the agent then exits).
func (c *cli) evacuate(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("evacuate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	wait := fs.Bool("wait", false, "show progress until the cell is empty")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if err := noArgs(fs.Args(), "evacuate [--wait]"); err != nil {
		return err
	}
	hc, ok := c.client.(*executor.HTTPClient)
	if !ok {
		return fmt.Errorf("evacuate needs the HTTP API")
	}
	if err := hc.Evacuate(ctx); err != nil {
		return err
	}
	fmt.Fprintln(c.out, "cell is evacuating: new containers are refused; instances stay until deleted or evacuation_timeout")
	if !*wait {
		return nil
	}
	start := time.Now()
	last := -1
	for {
		cs, err := c.client.List(ctx)
		if err != nil {
			fmt.Fprintf(c.out, "[%s] agent gone (%v): evacuation finished\n", time.Since(start).Round(time.Second), err)
			return nil
		}
		if len(cs) != last {
			running := 0
			for _, ct := range cs {
				if ct.State == executor.StateRunning {
					running++
				}
			}
			fmt.Fprintf(c.out, "[%s] %d containers left (%d running)\n", time.Since(start).Round(time.Second), len(cs), running)
			last = len(cs)
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return nil
		}
	}
}
