// Command cellagent is the cell's container lifecycle agent.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	goruntime "runtime"

	"github.com/cellagent/cellagent/containerstore/runtime"
	"github.com/cellagent/cellagent/logfile"
)

// The main goroutine keeps the main thread, so that no other goroutine
// ever runs there: the agent switches locked threads into containers'
// network namespaces (network.prepareNetNS, IPNetNS.Create, proxyhook's
// dialIn), and /proc/self/ns/net is the main thread's. A goroutine that
// landed on the main thread while it was switched would make
// /proc/self/ns/net name a container's namespace, and a main thread that
// could not switch back would be parked there, not ended.
func init() { goruntime.LockOSThread() }

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// The containerd shim runs this binary as the containers' logging driver.
	if os.Getenv("CONTAINER_ID") != "" && hasArg(os.Args[1:], runtime.LoggerArg) {
		if err := logfile.RunShimDriver(os.Args[1:], runtime.LoggerArg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	opts, err := parseArgs(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	if opts.version {
		fmt.Println("cellagent", version)
		return
	}
	cfg, err := loadConfig(opts.configPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cellagent: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	if opts.checkOnly {
		fmt.Println("config OK")
		return
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "cellagent: %v\n", err)
		os.Exit(1)
	}
}

// options are cellagent's command line.
type options struct {
	configPath string
	checkOnly  bool
	version    bool
}

const usageLine = "usage: cellagent [-config FILE] [-check-config] [-version]"

// parseArgs reads the command line; it prints what is wrong (or the help)
// to stderr. cellagent takes flags only: a stray argument is refused, so
// that "cellagent -check-config FILE" does not validate the defaults
// while FILE is ignored.
func parseArgs(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("cellagent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.configPath, "config", "", "path of the JSON config file (every key has a default)")
	fs.BoolVar(&o.checkOnly, "check-config", false, "validate the config (-config FILE, or the defaults) and exit")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, usageLine)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		hint := ""
		if o.configPath == "" {
			hint = fmt.Sprintf("; did you mean -config %s?", fs.Arg(0))
		}
		err := fmt.Errorf("cellagent: unexpected argument %q%s", fs.Arg(0), hint)
		fmt.Fprintf(stderr, "%v\n%s\n", err, usageLine)
		return o, err
	}
	return o, nil
}

func hasArg(args []string, want string) bool {
	for _, a := range args {
		if a == want {
			return true
		}
	}
	return false
}
