package main

import (
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether f is a terminal (TCGETS succeeds).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// escapeWriter passes an app's output to an operator's terminal with every
// control character made visible: ESC, CSI and OSC sequences could move the
// cursor, rewrite what was printed, set the window title, or (on some
// terminals) answer back into the shell. Newline and tab pass; other C0
// bytes, DEL, C1 code points (U+0080-U+009F, which some terminals obey) and
// bytes that are not UTF-8 become \xNN (\u0085 for C1). A UTF-8 sequence cut
// between two writes is held until the rest arrives.
type escapeWriter struct {
	w       io.Writer
	pending []byte // start of a UTF-8 sequence cut by the last write
}

func (e *escapeWriter) Write(p []byte) (int, error) {
	n := len(p)
	b := append(e.pending, p...)
	e.pending = nil
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		c := b[0]
		if c < utf8.RuneSelf {
			if (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f {
				out = fmt.Appendf(out, `\x%02x`, c)
			} else {
				out = append(out, c)
			}
			b = b[1:]
			continue
		}
		if !utf8.FullRune(b) {
			e.pending = append([]byte(nil), b...)
			break
		}
		r, size := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && size == 1:
			out = fmt.Appendf(out, `\x%02x`, c)
		case r >= 0x80 && r <= 0x9f:
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, b[:size]...)
		}
		b = b[size:]
	}
	if _, err := e.w.Write(out); err != nil {
		return 0, err
	}
	return n, nil
}

// Flush writes a sequence still cut at the end of the stream, escaped.
func (e *escapeWriter) Flush() error {
	var out []byte
	for _, c := range e.pending {
		out = fmt.Appendf(out, `\x%02x`, c)
	}
	e.pending = nil
	_, err := e.w.Write(out)
	return err
}
