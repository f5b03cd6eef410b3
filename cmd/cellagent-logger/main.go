// Command cellagent-logger is the logging binary containerd's shim runs
// beside every container (binary:// log URI, see logfile.RunShimDriver): it
// copies the task's stdout and stderr into the container's size-capped app
// log. cellagent starts containers with it when it is installed next to
// cellagent, and with cellagent itself (which has the same mode) when not.
//
// It is a binary of its own because the shim waits for it before it
// starts the task: cellagent's 48 MB spent ~12 ms of CPU (page faults and
// package initialisation) per start on that, this one ~2 ms, and each
// container keeps one of these processes for its lifetime.
package main

import (
	"fmt"
	"os"

	"github.com/cellagent/cellagent/logfile"
)

// PathArg names the log file among the shim's arguments; it is
// runtime.LoggerArg, which the agent puts in the URI (main_test checks).
const PathArg = "cellagent-logger"

func main() {
	if err := logfile.RunShimDriver(os.Args[1:], PathArg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
