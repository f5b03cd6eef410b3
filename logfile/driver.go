package logfile

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
)

// RunShimDriver is the main of the logging binary containerd's shim starts
// for binary:// log URIs. args are the URI's query as key value pairs in
// any order; it needs pathKey (the log file) and optionally "max-bytes".
// It returns when both streams are closed, i.e. the task has exited.
func RunShimDriver(args []string, pathKey string) error {
	opts := map[string]string{}
	for i := 0; i+1 < len(args); i += 2 {
		opts[args[i]] = args[i+1]
	}
	path := opts[pathKey]
	if path == "" {
		return fmt.Errorf("logging driver: no %s argument in %q", pathKey, args)
	}
	maxBytes, _ := strconv.ParseInt(opts["max-bytes"], 10, 64)
	out, err := OpenCapped(path, maxBytes)
	if err != nil {
		return fmt.Errorf("logging driver: %w", err)
	}
	defer out.Close()
	stdout, stderr, ready := os.NewFile(3, "stdout"), os.NewFile(4, "stderr"), os.NewFile(5, "ready")
	if ready != nil {
		ready.Close() // tells the shim we are ready
	}
	var wg sync.WaitGroup
	for _, in := range []*os.File{stdout, stderr} {
		if in == nil {
			continue
		}
		wg.Add(1)
		go func(in *os.File) {
			defer wg.Done()
			_, _ = io.Copy(out, in)
		}(in)
	}
	wg.Wait()
	return nil
}
