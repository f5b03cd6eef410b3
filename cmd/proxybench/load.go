package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
)

// The load generator speaks just enough HTTP/1.1 for GET / over kept-alive
// connections: a fixed request, then the status line, headers and a
// Content-Length body. net/http's client costs several times more CPU per
// request, and on one generator CPU that cost would cap every target alike.
var request = []byte("GET / HTTP/1.1\r\nHost: " + serverName + "\r\nUser-Agent: proxybench\r\n\r\n")

// Bounds on every loop besides its duration.
const (
	maxRequestsPerConn = 2_000_000
	maxConnsPerWorker  = 1_000_000
	ioTimeout          = 5 * time.Second
)

// target is where the generator sends requests: TLS when tls is set.
type target struct {
	name string
	addr string
	tls  *tls.Config
}

// dial opens a connection and, for TLS targets, completes a full handshake
// (the client keeps no session cache, so nothing is resumed).
func (t target) dial() (net.Conn, error) {
	c, err := net.DialTimeout("tcp", t.addr, ioTimeout)
	if err != nil {
		return nil, err
	}
	if t.tls == nil {
		return c, nil
	}
	tc := tls.Client(c, t.tls)
	_ = tc.SetDeadline(time.Now().Add(ioTimeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

type httpConn struct {
	net.Conn
	r *bufio.Reader
}

func (t target) open() (*httpConn, error) {
	c, err := t.dial()
	if err != nil {
		return nil, err
	}
	return &httpConn{Conn: c, r: bufio.NewReaderSize(c, 4096)}, nil
}

var errNoLength = errors.New("response without Content-Length")

// get sends GET / and reads the whole response; anything but 200 is an error.
func (c *httpConn) get() error {
	if _, err := c.Write(request); err != nil {
		return err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("unexpected status line %q", line)
	}
	length := -1
	for i := 0; i < 100; i++ {
		line, err = c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		const cl = "content-length:"
		if len(line) > len(cl) && bytes.EqualFold(line[:len(cl)], []byte(cl)) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(line[len(cl):]))); err != nil {
				return fmt.Errorf("content-length: %w", err)
			}
		}
	}
	if length < 0 {
		return errNoLength
	}
	_, err = c.r.Discard(length)
	return err
}

// loadResult is one phase against one target.
type loadResult struct {
	count   int
	elapsed time.Duration
	lat     []time.Duration // sorted; empty for the handshake phase
	genCPU  time.Duration   // this process's CPU time during the phase
}

func (r loadResult) rate() float64 { return float64(r.count) / r.elapsed.Seconds() }

func (r loadResult) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[int(float64(len(r.lat)-1)*p+0.5)]
}

// keepAlive opens conns connections (outside the timing), then each sends
// GETs back to back for d and records every request's latency.
func keepAlive(t target, conns int, d time.Duration) (loadResult, error) {
	cs := make([]*httpConn, 0, conns)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for i := 0; i < conns; i++ {
		c, err := t.open()
		if err != nil {
			return loadResult{}, fmt.Errorf("%s: open connection %d: %w", t.name, i, err)
		}
		cs = append(cs, c)
	}
	lats := make([][]time.Duration, conns)
	errs := make([]error, conns)
	cpu0 := selfCPU()
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetDeadline(end.Add(ioTimeout))
			lat := make([]time.Duration, 0, 1<<14)
			for n := 0; n < maxRequestsPerConn; n++ {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				if err := c.get(); err != nil {
					errs[i] = err
					break
				}
				lat = append(lat, time.Since(t0))
			}
			lats[i] = lat
		}()
	}
	wg.Wait()
	res := loadResult{elapsed: time.Since(start), genCPU: selfCPU() - cpu0}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("%s: keep-alive: %w", t.name, err)
	}
	for _, l := range lats {
		res.lat = append(res.lat, l...)
	}
	slices.Sort(res.lat)
	res.count = len(res.lat)
	return res, nil
}

// newConns runs workers that each, back to back for d, open a connection
// (a full TLS handshake for TLS targets), send one GET and close.
func newConns(t target, workers int, d time.Duration) (loadResult, error) {
	counts := make([]int, workers)
	errs := make([]error, workers)
	cpu0 := selfCPU()
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < maxConnsPerWorker && time.Now().Before(end); n++ {
				c, err := t.open()
				if err != nil {
					errs[i] = err
					return
				}
				_ = c.SetDeadline(time.Now().Add(ioTimeout))
				err = c.get()
				c.Close()
				if err != nil {
					errs[i] = err
					return
				}
				counts[i]++
			}
		}()
	}
	wg.Wait()
	res := loadResult{elapsed: time.Since(start), genCPU: selfCPU() - cpu0}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("%s: new connections: %w", t.name, err)
	}
	for _, n := range counts {
		res.count += n
	}
	return res, nil
}

// holdConns opens n connections with a few workers, each completing the
// handshake and one GET, and leaves them open and idle. The caller closes
// them with the returned function.
func holdConns(t target, n, workers int) (func(), error) {
	cs := make([]*httpConn, n)
	closeAll := func() {
		for _, c := range cs {
			if c != nil {
				c.Close()
			}
		}
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				c, err := t.open()
				if err != nil {
					errs[w] = fmt.Errorf("connection %d: %w", i, err)
					return
				}
				cs[i] = c
				_ = c.SetDeadline(time.Now().Add(ioTimeout))
				if err := c.get(); err != nil {
					errs[w] = fmt.Errorf("connection %d: %w", i, err)
					return
				}
				_ = c.SetDeadline(time.Time{})
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeAll()
		return nil, fmt.Errorf("%s: hold %d connections: %w", t.name, n, err)
	}
	return closeAll, nil
}

// probe makes one request on a new connection and reports what TLS
// parameters were negotiated.
func probe(t target) (string, error) {
	c, err := t.open()
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if err := c.get(); err != nil {
		return "", err
	}
	tc, ok := c.Conn.(*tls.Conn)
	if !ok {
		return "plain HTTP/1.1", nil
	}
	cs := tc.ConnectionState()
	return fmt.Sprintf("%s %s %s resumed=%v", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), cs.CurveID, cs.DidResume), nil
}
