// Command cellctl is the operators' CLI over a cellagent's local HTTP API.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cellagent/cellagent/executor"
)

const usage = `cellctl: talk to a cellagent's local API.

Usage: cellctl [--api URL] [--json] COMMAND [ARGS]

Commands:
  state                      cell id, zone, capacity and container counts
  list                       containers as a table
  watch [--interval 2s]      live view: state, routable, memory app/proxy, cert expiry
  get GUID                   one container
  run GUID [flags] -- PATH [ARGS...]
                             reserve and run a container (see cellctl run -h)
  explain GUID               the instance's timeline and why it is not routable
  stop GUID                  stop (routes first, SIGTERM, grace, SIGKILL)
  delete GUID                destroy and release
  events [--follow] [--since N]
                             the event stream
  logs [--follow] [--source all|app|proxy] [--raw] GUID
                             the container's output (app and proxy, tagged);
                             control characters escaped on a terminal unless --raw
  import [--name REF] FILE   import an image archive (OCI layout or docker save tar)
  evacuate [--wait]          refuse new work and drain the cell (progress with --wait)
  routes [--watch] [--nats URL] [--data-dir DIR]
                             the route table as a router sees it on NATS

The API address comes from --api, else $CELLAGENT_API, else http://127.0.0.1:1800.
`

type cli struct {
	client executor.Client
	json   bool
	out    io.Writer
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cellctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	api := fs.String("api", envOr("CELLAGENT_API", "http://127.0.0.1:1800"), "cellagent API base URL")
	asJSON := fs.Bool("json", false, "print JSON instead of tables")
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	c := &cli{client: executor.NewHTTPClient(*api, nil), json: *asJSON, out: stdout}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	var err error
	switch cmd {
	case "state":
		if err = noArgs(rest, "state"); err == nil {
			err = c.state(ctx)
		}
	case "list", "ls":
		if err = noArgs(rest, cmd); err == nil {
			err = c.list(ctx)
		}
	case "get":
		err = c.get(ctx, rest)
	case "run":
		err = c.run(ctx, rest, stderr)
	case "stop":
		err = c.stop(ctx, rest)
	case "delete", "rm":
		err = c.delete(ctx, rest)
	case "events":
		err = c.events(ctx, rest, stderr)
	case "logs":
		err = c.logs(ctx, rest, stderr)
	case "watch":
		err = c.watch(ctx, rest, stderr)
	case "explain":
		err = c.explain(ctx, rest)
	case "evacuate":
		err = c.evacuate(ctx, rest, stderr)
	case "import":
		err = c.importImage(ctx, rest, stderr)
	case "routes":
		err = c.routes(ctx, rest, stderr)
	case "help", "-h", "--help":
		fs.Usage()
		return 0
	default:
		fmt.Fprintf(stderr, "cellctl: unknown command %q\n\n", cmd)
		fs.Usage()
		return 2
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return 0
		}
		fmt.Fprintf(stderr, "cellctl %s: %s\n", cmd, describe(err, *api))
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

type usageError string

func (u usageError) Error() string { return string(u) }

// describe adds what to do to common failures.
func describe(err error, api string) string {
	var apiErr *executor.Error
	if errors.As(err, &apiErr) {
		return fmt.Sprintf("%s (%s)", apiErr.Message, apiErr.Code)
	}
	msg := err.Error()
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Sprintf("%s\n  is cellagent running and listening on %s? set --api or $CELLAGENT_API", msg, api)
	}
	return msg
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func oneGUID(args []string, cmd string) (string, error) {
	if len(args) != 1 {
		return "", usageError(fmt.Sprintf("usage: cellctl %s GUID", cmd))
	}
	return args[0], nil
}

// noArgs refuses arguments to a command that takes flags only: they
// would be ignored silently.
func noArgs(args []string, usage string) error {
	if len(args) > 0 {
		return usageError(fmt.Sprintf("unexpected argument %q\nusage: cellctl %s", args[0], usage))
	}
	return nil
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
