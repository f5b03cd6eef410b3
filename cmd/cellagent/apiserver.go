package main

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/cellagent/cellagent/executor/httpapi"
)

// Timeouts of the API listeners. A client that opens connections and
// sends nothing (or stops in the middle of the headers or the TLS
// handshake) would otherwise hold a goroutine and a descriptor for ever.
// There is no ReadTimeout or WriteTimeout: event and log streams and image
// uploads are long by design; handlers bound their own bodies.
type serverTimeouts struct {
	// ReadHeader bounds the TLS handshake and the request headers
	// (net/http applies it to the handshake of a *tls.Conn).
	ReadHeader time.Duration
	// Idle closes a kept-alive connection with no request.
	Idle time.Duration
}

var apiTimeouts = serverTimeouts{ReadHeader: 10 * time.Second, Idle: 2 * time.Minute}

// apiServer is an ifrit.Runner serving one API listener (ifrit's
// http_server has no way to set the timeouts).
type apiServer struct {
	addr     string
	handler  http.Handler
	tls      *tls.Config
	timeouts serverTimeouts
	// listening, when set, is told the bound address (tests listen on :0).
	listening func(net.Addr)
}

func newAPIServer(addr string, h http.Handler, tc *tls.Config) *apiServer {
	return &apiServer{addr: addr, handler: h, tls: tc, timeouts: apiTimeouts}
}

func (s *apiServer) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	// Closed when shutdown starts: event and log streams end then, while
	// Shutdown waits for every other request (a PUT in flight finishes).
	endStreams := make(chan struct{})
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.tls,
		ReadHeaderTimeout: s.timeouts.ReadHeader,
		IdleTimeout:       s.timeouts.Idle,
		MaxHeaderBytes:    64 << 10,
		BaseContext: func(net.Listener) context.Context {
			return httpapi.WithStreamsEnd(context.Background(), endStreams)
		},
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	if s.listening != nil {
		s.listening(ln.Addr())
	}
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(ln) }()
	close(ready)
	select {
	case err := <-errs:
		return err
	case <-signals:
		close(endStreams)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := srv.Shutdown(ctx)
		if err != nil {
			_ = srv.Close() // a request still open after a minute
		}
		if serr := <-errs; !errors.Is(serr, http.ErrServerClosed) {
			return serr
		}
		return err
	}
}
