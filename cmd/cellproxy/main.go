// Command cellproxy is the TLS-terminating sidecar cellagent runs in every
// container. It takes Envoy's command line and the Envoy files package
// proxyconfig writes:
//
//	cellproxy -c /etc/cf-assets/envoy_config/envoy.yaml --drain-time-s 900
//
// It must be static (it runs in the container's rootfs): build it with
// CGO_ENABLED=0 go build ./cmd/cellproxy; with cgo on, static_cgo.go links
// it statically.
//
// The pure Go resolver only: a statically linked glibc resolver would need
// the host's glibc at run time.
//
//go:debug netdns=go
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/sigmon"

	"github.com/cellagent/cellagent/proxy"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("cellproxy", flag.ContinueOnError)
	var configPath, logLevel string
	fs.StringVar(&configPath, "c", "", "path to the Envoy v3 bootstrap (envoy.yaml)")
	fs.StringVar(&configPath, "config-path", "", "same as -c")
	drainS := fs.Int("drain-time-s", 600, "seconds open connections may continue after SIGTERM")
	fs.StringVar(&logLevel, "l", "info", "log level: trace, debug, info, warning, warn, error, critical, off")
	fs.StringVar(&logLevel, "log-level", "info", "same as -l")
	mode := fs.String("mode", "serve", "serve, or validate: check the bootstrap and SDS files and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "cellproxy: unexpected argument %q\nusage: cellproxy -c FILE [--drain-time-s N] [-l LEVEL] [--mode serve|validate]\n", fs.Arg(0))
		return 2
	}
	if configPath == "" {
		fmt.Fprintln(os.Stderr, "cellproxy: -c (--config-path) is required")
		return 2
	}
	if *drainS < 0 {
		fmt.Fprintln(os.Stderr, "cellproxy: --drain-time-s must not be negative")
		return 2
	}
	if *mode != "serve" && *mode != "validate" {
		fmt.Fprintf(os.Stderr, "cellproxy: unknown mode %q (serve, validate)\n", *mode)
		return 2
	}
	level, ok := levels[logLevel]
	if !ok {
		fmt.Fprintf(os.Stderr, "cellproxy: unknown log level %q\n", logLevel)
		return 2
	}

	logger := lager.NewLogger("cellproxy")
	logger.RegisterSink(lager.NewPrettySink(os.Stderr, level))

	cfg := proxy.DefaultConfig()
	cfg.BootstrapPath = configPath
	cfg.DrainTimeout = time.Duration(*drainS) * time.Second
	p, err := proxy.New(logger, cfg)
	if err != nil {
		logger.Error("invalid-config", err)
		fmt.Fprintf(os.Stderr, "cellproxy: %v\n", err)
		return 1
	}
	if *mode == "validate" {
		fmt.Fprintf(os.Stderr, "cellproxy: configuration '%s' OK\n", configPath)
		return 0
	}
	if err := <-ifrit.Invoke(sigmon.New(p)).Wait(); err != nil {
		logger.Error("exited", err)
		return 1
	}
	logger.Info("exited")
	return 0
}

// Envoy's level names; lager has fewer levels, so several share one.
var levels = map[string]lager.LogLevel{
	"trace":    lager.DEBUG,
	"debug":    lager.DEBUG,
	"info":     lager.INFO,
	"warning":  lager.ERROR,
	"warn":     lager.ERROR,
	"error":    lager.ERROR,
	"critical": lager.FATAL,
	"off":      lager.FATAL,
}
