package main

import (
	"context"
	"fmt"
	"strings"

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
	// The filter is not there in host mode or for an instance not set
	// up yet: the explanation stands without it.
	var nf *executor.NetworkFilter
	if f, err := hc.NetworkFilter(ctx, guid); err == nil {
		nf = &f
	}
	if c.json {
		return c.printJSON(struct {
			executor.Explanation
			Network *executor.NetworkFilter `json:"network,omitempty"`
		}{e, nf})
	}
	fmt.Fprintf(c.out, "%s: %s, routable %s\n", e.GUID, e.State, yesNo(e.Routable))
	if id := diegoIdentity(e.GUID, e.Tags); id != "" {
		fmt.Fprintln(c.out, id)
	}
	if e.Blocker != "" {
		fmt.Fprintf(c.out, "not routable because: %s\n", e.Blocker)
	}
	if e.FailureCode != "" {
		fmt.Fprintf(c.out, "failure code: %s\n", e.FailureCode)
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
	if nf != nil {
		c.printNetwork(*nf)
	}
	return nil
}

// printNetwork shows what the instance may reach and what reached its
// drops, so that "why can't my app reach X" has an answer.
func (c *cli) printNetwork(f executor.NetworkFilter) {
	fmt.Fprintf(c.out, "\nnetwork (denied so far: %d egress, %d ingress packets; the kernel log has lines \"cellagent denied <direction> %s\"):\n",
		f.Denied["egress"], f.Denied["ingress"], f.GUID)
	fmt.Fprintf(c.out, "  always denied: %s\n", strings.Join(f.AlwaysDenied, ", "))
	rule := func(kind string, r executor.EgressRule) {
		line := fmt.Sprintf("  %-8s %-4s to %s", kind, r.Protocol, strings.Join(r.Destinations, ", "))
		if r.Ports != "" {
			line += " ports " + r.Ports
		}
		if r.Log {
			line += " (logged)"
		}
		fmt.Fprintln(c.out, line)
	}
	for _, r := range f.DefaultEgress {
		rule("default", r)
	}
	for _, r := range f.EgressRules {
		rule("egress", r)
	}
	if len(f.DefaultEgress)+len(f.EgressRules) == 0 {
		fmt.Fprintln(c.out, "  no egress rule: every new connection out is denied")
	}
	for _, p := range f.NetworkPolicies {
		fmt.Fprintf(c.out, "  ingress  %-4s from log_guid %s ports %s\n", p.Protocol, p.SourceLogGUID, p.Ports)
	}
	fmt.Fprintln(c.out, "  ingress  otherwise only through the instance's host ports")
}
