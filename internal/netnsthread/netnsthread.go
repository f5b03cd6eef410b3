// Package netnsthread runs code on an OS thread inside another network
// namespace: what a new socket, /proc/sys/net or a bind mount of
// /proc/thread-self/ns/net see there is that namespace's. The rest of the
// process stays where it is.
package netnsthread

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs enter (which moves the thread into another network namespace,
// or fails having moved it nowhere), then do, on a locked OS thread of its
// own, and brings the thread back to the namespace it was in. A thread
// that cannot come back is never unlocked, so Go ends it with its
// goroutine; one that never left is unlocked.
func Do(enter, do func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer unix.Close(back)
		if err := enter(); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = do()
		if rerr := unix.Setns(back, unix.CLONE_NEWNET); rerr != nil {
			// Left locked: the thread ends with this goroutine.
			errc <- errors.Join(err, fmt.Errorf("setns back: %w", rerr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// At runs do on an OS thread inside the namespace at path (a bind mount
// such as /var/run/netns/NAME, or /proc/PID/ns/net), as Do does.
func At(path string, do func() error) error {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(target)
	return Do(func() error {
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("setns: %w", err)
		}
		return nil
	}, do)
}
