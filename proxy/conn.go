package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/internal/backoff"
)

// listener is one bound TLS listener.
type listener struct {
	spec ListenerSpec
	cert *secretSource
	val  *secretSource // nil without client certificate validation
	ln   net.Listener
	// conf is what GetConfigForClient hands to new handshakes; replaced
	// whole when a secret changes. served is the certificate secret conf
	// was built from (what /secrets reports).
	conf   atomic.Pointer[tls.Config]
	served atomic.Pointer[certSecret]
	outer  *tls.Config
}

func (p *Proxy) newListener(spec ListenerSpec) *listener {
	l := &listener{spec: spec, cert: p.secrets[spec.Cert]}
	if spec.Validation != nil {
		l.val = p.secrets[*spec.Validation]
	}
	l.outer = &tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return l.conf.Load(), nil },
	}
	l.refresh(p.clock.Now)
	return l
}

func (l *listener) refresh(now func() time.Time) {
	c := l.cert.cert.Load()
	l.conf.Store(tlsConfig(l.spec, c, l.val, now))
	l.served.Store(c)
}

// serve accepts until the listener is closed.
func (p *Proxy) serve(logger lager.Logger, l *listener) {
	defer p.loops.Done()
	// Out of file descriptors and the like: back off as net/http does.
	retry := backoff.New(p.clock, 5*time.Millisecond, time.Second)
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			logger.Error("accept-failed", err, lager.Data{"listener": l.spec.Name, "retry-in": retry.Current().String()})
			if !retry.Wait(p.stopAccepting) {
				return
			}
			continue
		}
		retry.Reset()
		if p.active.Add(1) > int64(p.cfg.MaxConnections) {
			p.active.Add(-1)
			c.Close()
			logger.Debug("connection-limit-reached", lager.Data{"listener": l.spec.Name, "max-connections": p.cfg.MaxConnections})
			continue
		}
		p.track(c)
		p.handlers.Add(1)
		go p.handle(logger, l, c)
	}
}

// handle serves one client connection to its end.
func (p *Proxy) handle(logger lager.Logger, l *listener, raw net.Conn) {
	defer p.handlers.Done()
	defer p.active.Add(-1) // counted at accept
	defer p.untrack(raw)
	defer raw.Close()

	// Nothing happens for a client until it sends its first byte (its
	// ClientHello), within the handshake deadline: a connection that stays
	// silent never reaches the app. Idle connections used to hold one app
	// connection each, and the app's file limit (1024) then ran out before
	// any real client got through.
	first, err := firstByte(raw, p.cfg.HandshakeTimeout)
	if err != nil {
		return
	}
	// The app is dialled before the handshake: when it is not listening, the
	// client sees a failed handshake (Gorouter retries those on another
	// instance) instead of a TLS session that closes without an answer.
	up, err := net.DialTimeout("tcp", l.spec.Upstream, l.spec.ConnectTimeout)
	if err != nil {
		logger.Info("upstream-connect-failed", lager.Data{"listener": l.spec.Name, "upstream": l.spec.Upstream, "error": err.Error()})
		return
	}
	p.track(up)
	defer p.untrack(up)
	defer up.Close()

	tc := tls.Server(&prefixConn{Conn: raw, prefix: first}, l.outer)
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.HandshakeTimeout)
	err = tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		logger.Debug("handshake-failed", lager.Data{"listener": l.spec.Name, "remote": raw.RemoteAddr().String(), "error": err.Error()})
		return
	}
	pipe(tc, raw, up, p.cfg.IdleTimeout)
}

// pipe copies both ways. EOF on one side is passed on as a write shutdown
// of the other (close_notify and FIN towards the client), so protocols that
// half-close work; an error on either side closes both, and so does idle
// (nothing either way for idle).
func pipe(client *tls.Conn, raw, up net.Conn, idle time.Duration) {
	t := &idleTimer{timeout: idle}
	t.touch()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := copyHalf(up, client, t); err != nil {
			raw.Close()
			up.Close()
			return
		}
		closeWrite(up)
	}()
	if err := copyHalf(client, up, t); err != nil {
		raw.Close()
		up.Close()
	} else {
		_ = client.CloseWrite()
		closeWrite(raw)
	}
	<-done
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// Buffers. An idle connection waits in Read, and whatever buffer it waits
// with is held for as long as the connection lives; most proxied connections
// (kept-alive router connections) are idle most of the time. So a copy waits
// with a small buffer and switches to a large pooled one only while reads
// fill the small one, i.e. while data streams. TLS records carry at most
// 16 KiB, so a larger buffer would sit half empty.
const (
	smallBufSize = 1 << 10
	bigBufSize   = 16 << 10
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
	bigPool   = sync.Pool{New: func() any { b := make([]byte, bigBufSize); return &b }}
)

// idleTimer is the last time either direction of a connection moved data.
type idleTimer struct {
	timeout time.Duration
	last    atomic.Int64 // unix nanoseconds
}

func (t *idleTimer) touch() { t.last.Store(time.Now().UnixNano()) }

// idleReader is one direction's reads under its connection's idleTimer.
type idleReader struct {
	src   deadlineReader
	t     *idleTimer
	armed time.Time // the read deadline set last
}

// Read reads with a deadline about the idle timeout away (re-armed only
// when a quarter of it has passed: a deadline change per read cost ~5% of
// throughput). A deadline that passes while the other direction moved
// data is not idle: it reads again.
func (r *idleReader) Read(b []byte) (int, error) {
	t := r.t
	for {
		if now := time.Now(); r.armed.Sub(now) < t.timeout*3/4 {
			r.armed = now.Add(t.timeout)
			_ = r.src.SetReadDeadline(r.armed)
		}
		n, err := r.src.Read(b)
		if n > 0 {
			t.touch()
		}
		var ne net.Error
		if n == 0 && errors.As(err, &ne) && ne.Timeout() &&
			time.Since(time.Unix(0, t.last.Load())) < t.timeout {
			continue
		}
		return n, err
	}
}

type deadlineReader interface {
	io.Reader
	SetReadDeadline(time.Time) error
}

// copyHalf copies src to dst until EOF (nil), an error or idle.
func copyHalf(dst io.Writer, from deadlineReader, t *idleTimer) error {
	src := &idleReader{src: from, t: t}
	sp := smallPool.Get().(*[]byte)
	defer smallPool.Put(sp)
	small := *sp
	for {
		n, err := src.Read(small)
		if n > 0 {
			if _, werr := dst.Write(small[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return eofIsNil(err)
		}
		if n == len(small) {
			if err := copyBurst(dst, src); err != nil {
				return eofIsNil(err)
			}
		}
	}
}

// copyBurst copies with a large buffer until a read comes back short.
func copyBurst(dst io.Writer, src io.Reader) error {
	bp := bigPool.Get().(*[]byte)
	defer bigPool.Put(bp)
	big := *bp
	for {
		n, err := src.Read(big)
		if n > 0 {
			if _, werr := dst.Write(big[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
		if n < len(big) {
			return nil
		}
	}
}

func eofIsNil(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// track records an open connection so a drain timeout can close it.
func (p *Proxy) track(c net.Conn) {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	p.conns[c] = struct{}{}
}

func (p *Proxy) untrack(c net.Conn) {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	delete(p.conns, c)
}

func (p *Proxy) closeAll() int {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	return len(p.conns)
}

// firstByte waits up to timeout for c's first byte.
func firstByte(c net.Conn, timeout time.Duration) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, err
	}
	return b, c.SetReadDeadline(time.Time{})
}

// prefixConn reads prefix before the connection's own bytes.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
