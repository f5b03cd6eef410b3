// Command cellinit is the container's first process that runs an app and
// its proxy (see internal/cellinit). The agent bind-mounts it read-only
// into the container; it is static (CGO_ENABLED=0) and links no more than
// the init needs.
package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/cellagent/cellagent/internal/cellinit"
)

// init keeps the main goroutine on the main thread. A start from a
// narrowed thread (internal/cellinit startDirect) must never run there:
// /proc/<pid>/status shows the main thread's credentials (an init whose
// proxy started there would show the proxy's empty bounding set), and the
// runtime parks a main thread whose locked goroutine ended instead of
// ending it, leaving a thread that answers all-threads calls differently.
//
// One P: the init only waits (for children, signals, timers and its
// checks' sockets), and every further P lets the runtime start and keep
// more threads, each of which every all-threads system call of
// restrictSelf then signals and waits for (the caller spinning in
// sched_yield while the CPUs are busy with other starts).
func init() {
	runtime.LockOSThread()
	runtime.GOMAXPROCS(1)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == cellinit.ExecAsArg {
		err := cellinit.ExecAs(os.Args[2:])
		fmt.Fprintf(os.Stderr, "cellinit: %v\n", err)
		os.Exit(cellinit.AppStartFailed)
	}
	cfg, err := cellinit.Parse(os.Args[1:])
	if err != nil {
		cellinit.ReportBadFlags(cfg, os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(cellinit.Run(cfg, os.Stderr))
}
