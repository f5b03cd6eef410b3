package proxyhook

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/internal/cellinit"
)

// stateWatch tells the supervisors of cellinit-run proxies when their
// state file was replaced: one inotify instance for the agent, one watch
// per instance's run directory, one goroutine reading the events. Polling
// each state file every StatePoll cost a stat and a goroutine wake-up per
// instance per second: at 500 instances most of an idle agent's CPU
// (issue 16, density bench). The supervisors still look on a slow
// fallback tick (stateFallback), so an event lost to a queue overflow
// delays a change, never hides it.
//
// cellinit replaces the file by rename (atomicfile), so the event is
// IN_MOVED_TO naming StateFile; the proxy's and the app's logs, written
// in the same directory, cause no event (no IN_MODIFY is asked for).
type stateWatch struct {
	file *os.File // the inotify descriptor, non-blocking, read through the runtime's poller

	mu   sync.Mutex
	wake map[int32]chan struct{} // by watch descriptor
}

// newStateWatch starts the watch; an error leaves supervisors polling.
func newStateWatch(wg *sync.WaitGroup) (*stateWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	w := &stateWatch{file: os.NewFile(uintptr(fd), "inotify"), wake: map[int32]chan struct{}{}}
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.read()
	}()
	return w, nil
}

// add watches dir; the channel is signalled (without blocking) whenever
// dir's StateFile is replaced. remove ends the watch.
func (w *stateWatch) add(dir string) (<-chan struct{}, func(), error) {
	raw, err := w.file.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var wd int
	var addErr error
	if err := raw.Control(func(fd uintptr) {
		wd, addErr = unix.InotifyAddWatch(int(fd), dir, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE|unix.IN_ONLYDIR)
	}); err != nil {
		return nil, nil, err
	}
	if addErr != nil {
		return nil, nil, os.NewSyscallError("inotify_add_watch", addErr)
	}
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	w.wake[int32(wd)] = ch
	w.mu.Unlock()
	remove := func() {
		w.mu.Lock()
		if w.wake[int32(wd)] == ch {
			delete(w.wake, int32(wd))
		}
		w.mu.Unlock()
		_ = raw.Control(func(fd uintptr) { _, _ = unix.InotifyRmWatch(int(fd), uint32(wd)) })
	}
	return ch, remove, nil
}

// close ends the watch and its reader.
func (w *stateWatch) close() { _ = w.file.Close() }

// read hands each event to its watch's channel until the descriptor is
// closed.
func (w *stateWatch) read() {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			continue // EINTR and the like; a closed file ends the loop above
		}
		w.dispatch(buf[:n])
	}
}

// dispatch signals the watches that events in b concern.
func (w *stateWatch) dispatch(b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			return
		}
		name := string(bytes.TrimRight(b[unix.SizeofInotifyEvent:end], "\x00"))
		b = b[end:]
		switch {
		case ev.Mask&unix.IN_Q_OVERFLOW != 0:
			for _, ch := range w.wake {
				signal(ch)
			}
		case name == cellinit.StateFile:
			if ch := w.wake[ev.Wd]; ch != nil {
				signal(ch)
			}
		}
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
