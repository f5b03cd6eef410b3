package main

import (
	"context"
	"fmt"

	"github.com/cellagent/cellagent/executor"
)

// explain prints an instance's timeline and what blocks it.
func (c *cli) explain(ctx context.Context, args []string) error {
	guid, err := oneGUID(args, "explain")
	if err != nil {
		return err
	}
	hc, ok := c.client.(*executor.HTTPClient)
	if !ok {
		return fmt.Errorf("explain needs the HTTP API")
	}
	e, err := hc.Explain(ctx, guid)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(e)
	}
	fmt.Fprintf(c.out, "%s: %s, routable %s\n", e.GUID, e.State, yesNo(e.Routable))
	if e.Blocker != "" {
		fmt.Fprintf(c.out, "not routable because: %s\n", e.Blocker)
	}
	fmt.Fprintln(c.out, "\ntimeline:")
	if !e.TimelineComplete {
		fmt.Fprintln(c.out, "  (older events have left the agent's buffer)")
	}
	for _, ev := range e.Timeline {
		line := fmt.Sprintf("  %s  %-27s", ev.Time.Format("15:04:05.000"), ev.Type)
		if ev.Message != "" {
			line += " " + ev.Message
		}
		fmt.Fprintln(c.out, line)
	}
	return nil
}
