// Command cellagent is the cell's container lifecycle agent.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/cellagent/cellagent/containerstore/runtime"
	"github.com/cellagent/cellagent/logfile"
)

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
	configPath := flag.String("config", "", "path of the JSON config file (every key has a default)")
	checkOnly := flag.Bool("check-config", false, "validate the config and exit")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("cellagent", version)
		return
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cellagent: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	if *checkOnly {
		fmt.Println("config OK")
		return
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "cellagent: %v\n", err)
		os.Exit(1)
	}
}

func hasArg(args []string, want string) bool {
	for _, a := range args {
		if a == want {
			return true
		}
	}
	return false
}
