package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"text/tabwriter"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats.go"

	"github.com/cellagent/cellagent/routeemitter/natsauth"
	"github.com/cellagent/cellagent/routeemitter/routetable"
)

// routes prints the route table seen on NATS: what a Gorouter listening on
// the same NATS would hold. Without --watch it listens for one register
// interval (routes are re-sent on it) and prints what it saw.
func (c *cli) routes(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("routes", flag.ContinueOnError)
	fs.SetOutput(stderr)
	natsURL := fs.String("nats", envOr("CELLAGENT_NATS", "nats://127.0.0.1:4222"), "NATS URL the agent registers routes on")
	watch := fs.Bool("watch", false, "keep printing the table as it changes")
	listen := fs.Duration("listen", 21*time.Second, "without --watch: how long to collect re-sent registrations")
	dataDir := fs.String("data-dir", envOr("CELLAGENT_DATA_DIR", "/var/lib/cellagent"),
		"the agent's data_dir: the embedded NATS user and password are read from its "+natsauth.EmbeddedAuthFile+" when the URL has none (root on the cell)")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if err := noArgs(fs.Args(), "routes [--watch] [--nats URL] [--listen 21s] [--data-dir DIR]"); err != nil {
		return err
	}
	opts := append([]nats.Option{nats.Timeout(3 * time.Second)}, natsAuth(*natsURL, *dataDir)...)
	nc, err := nats.Connect(*natsURL, opts...)
	if err != nil {
		return fmt.Errorf("connect to %s: %w (is the agent's NATS there? set --nats or $CELLAGENT_NATS; the embedded NATS wants the user and password of %s: nats://USER:PASSWORD@HOST:PORT, or run as root on the cell)",
			redactURL(*natsURL), err, filepath.Join(*dataDir, natsauth.EmbeddedAuthFile))
	}
	defer nc.Close()
	table := routetable.NewRouteTable()
	changed := make(chan struct{}, 1)
	logger := lager.NewLogger("cellctl")
	sub, err := routetable.WatchRoutes(logger, nc, table, func(ev routetable.RouteEvent) {
		if ev.Changed {
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	})
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	// Ask routers' peers to re-send now: a router.start makes emitters
	// re-emit promptly (as after a router restart).
	_ = nc.Publish("router.start", []byte(`{"id":"cellctl","hosts":[],"minimumRegisterIntervalInSeconds":20,"pruneThresholdInSeconds":120}`))
	if !*watch {
		select {
		case <-time.After(*listen):
		case <-ctx.Done():
		}
		return c.printRoutes(table)
	}
	fmt.Fprintf(c.out, "watching %s (Ctrl-C to stop)\n", *natsURL)
	for {
		select {
		case <-changed:
			fmt.Fprintf(c.out, "\n%s\n", time.Now().Format("15:04:05"))
			if err := c.printRoutes(table); err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		}
	}
}

func (c *cli) printRoutes(table *routetable.RouteTable) error {
	entries := table.Snapshot()
	if c.json {
		return c.printJSON(map[string]any{"routes": entries})
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "URI\tENDPOINT\tTLS\tINSTANCE\tINDEX\tSAN\tAPP")
	for _, e := range entries {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.URI, e.Address, yesNo(e.TLS), e.PrivateInstanceID,
			e.PrivateInstanceIndex, dash(e.ServerCertDomainSAN), dash(e.App))
	}
	if len(entries) == 0 {
		fmt.Fprintln(w, "(no routes)")
	}
	return w.Flush()
}

// natsAuth answers the embedded NATS credential from dataDir's file when
// the URL carries no user of its own and the file is readable.
func natsAuth(natsURL, dataDir string) []nats.Option {
	if u, err := url.Parse(natsURL); err == nil && u.User != nil {
		return nil
	}
	a, err := natsauth.ReadEmbeddedAuth(dataDir)
	if err != nil {
		return nil
	}
	return []nats.Option{nats.UserInfo(a.User, a.Password)}
}

// redactURL hides a password in a URL shown in an error.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return u.Redacted()
}
