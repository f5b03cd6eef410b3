package logfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// DefaultMaxBytes caps each generation when no cap is given.
const DefaultMaxBytes = 4 << 20

// Capped is an io.Writer over a size-capped file. Safe for concurrent use.
type Capped struct {
	path string
	max  int64

	mu   sync.Mutex // guards f and size
	f    *os.File
	size int64
}

// OpenCapped opens (appending) or creates the file at path.
func OpenCapped(path string, maxBytes int64) (*Capped, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Capped{path: path, max: maxBytes, f: f, size: st.Size()}, nil
}

func (c *Capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.size > 0 && c.size+int64(len(p)) > c.max {
		if err := c.rotateLocked(); err != nil {
			return 0, err
		}
	}
	n, err := c.f.Write(p)
	c.size += int64(n)
	return n, err
}

func (c *Capped) rotateLocked() error {
	if err := os.Rename(c.path, c.path+".1"); err != nil {
		return fmt.Errorf("rotate %s: %w", c.path, err)
	}
	f, err := os.OpenFile(c.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	c.f.Close()
	c.f, c.size = f, 0
	return nil
}

func (c *Capped) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.f.Close()
}

// Open reads the file at path (the previous generation first, when there
// is one). With follow, the reader keeps waiting for new output, across
// rotations, until ctx ends or the reader is closed.
func Open(ctx context.Context, path string, follow bool, poll time.Duration) (io.ReadCloser, error) {
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	cur, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if !follow {
		prev, err := os.Open(path + ".1")
		if err != nil {
			return cur, nil
		}
		return &multiCloser{Reader: io.MultiReader(prev, cur), closers: []io.Closer{prev, cur}}, nil
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		pw.CloseWithError(followLoop(ctx, path, cur, pw, poll))
	}()
	return &cancelReader{PipeReader: pr, cancel: cancel}, nil
}

// followLoop copies f and its successors to w; it owns and closes them.
func followLoop(ctx context.Context, path string, f *os.File, w io.Writer, poll time.Duration) error {
	defer func() { f.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		// At the end: has the file been rotated away?
		if rotated(path, f) {
			nf, err := os.Open(path)
			if err == nil {
				// Drain what is left of the old generation first.
				if _, err := io.CopyBuffer(w, f, buf); err != nil {
					nf.Close()
					return err
				}
				f.Close()
				f = nf
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
	}
}

func rotated(path string, f *os.File) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	if err1 != nil || err2 != nil {
		return false
	}
	sa, _ := a.Sys().(*syscall.Stat_t)
	sb, _ := b.Sys().(*syscall.Stat_t)
	return sa != nil && sb != nil && sa.Ino != sb.Ino
}

type multiCloser struct {
	io.Reader
	closers []io.Closer
}

func (m *multiCloser) Close() error {
	var errs []error
	for _, c := range m.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

type cancelReader struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (c *cancelReader) Close() error {
	c.cancel()
	return c.PipeReader.Close()
}
