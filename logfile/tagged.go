package logfile

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// Source is one capped log file and the tag its lines get.
type Source struct {
	Tag  string
	Path string
}

// maxLine is the longest line passed on whole; a longer one is cut into
// pieces of this size, each tagged.
const maxLine = 64 << 10

// OpenTagged reads several capped files as one stream of lines, each
// prefixed with "[TAG] ". Without follow the sources come one after the
// other, in the order given (their files carry no timestamps to merge by); a
// source whose file does not exist is skipped. With follow, what the files
// hold comes first, then new lines as they are written to any of them,
// whole lines never interleaved; a missing file is waited for.
func OpenTagged(ctx context.Context, sources []Source, follow bool, poll time.Duration) (io.ReadCloser, error) {
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	lw := &lineWriter{w: pw}
	if !follow {
		go func() {
			defer cancel()
			for _, src := range sources {
				if err := copySource(ctx, src, false, poll, lw); err != nil {
					pw.CloseWithError(err)
					return
				}
			}
			pw.Close()
		}()
		return &cancelReader{PipeReader: pr, cancel: cancel}, nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(sources))
	for _, src := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := copySource(ctx, src, true, poll, lw); err != nil {
				errs <- err
				cancel() // one broken source ends the stream
			}
		}()
	}
	go func() {
		wg.Wait()
		close(errs)
		pw.CloseWithError(<-errs) // nil when every source ended cleanly
	}()
	return &cancelReader{PipeReader: pr, cancel: cancel}, nil
}

// copySource writes src's lines to lw until the file ends (or, with follow,
// until ctx ends).
func copySource(ctx context.Context, src Source, follow bool, poll time.Duration, lw *lineWriter) error {
	var rc io.ReadCloser
	for {
		var err error
		rc, err = Open(ctx, src.Path, follow, poll)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
	}
	// Closing the follower is what ends a blocked read when ctx ends.
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer stop()
	defer rc.Close()
	br := bufio.NewReaderSize(rc, maxLine)
	prefix := []byte("[" + src.Tag + "] ")
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 && (err == nil || errors.Is(err, bufio.ErrBufferFull) || errors.Is(err, io.EOF)) {
			if werr := lw.writeLine(prefix, line); werr != nil {
				return werr
			}
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF), ctx.Err() != nil:
			return nil
		default:
			return err
		}
	}
}

// lineWriter writes whole tagged lines, one writer at a time.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) writeLine(prefix, line []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	buf := make([]byte, 0, len(prefix)+len(line)+1)
	buf = append(append(buf, prefix...), line...)
	if buf[len(buf)-1] != '\n' {
		buf = append(buf, '\n')
	}
	_, err := l.w.Write(buf)
	return err
}
