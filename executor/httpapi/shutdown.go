package httpapi

import (
	"context"
	"net/http"
	"time"
)

// http.Server.Shutdown waits for every open request, and a stream (GET
// /v1/events, GET .../logs?follow=1) ends only when its client goes: one
// follower kept the agent from exiting until Shutdown's own timeout. A
// server passes its streams a channel it closes when it starts shutting
// down; the streams end at once, every other request finishes as usual.

type streamsEndKey struct{}

// WithStreamsEnd returns ctx carrying end, for an http.Server's
// BaseContext: when end is closed the handler ends its streams, an event
// stream with a last executor.EventStreamEnded event and a log stream with
// the trailer executor.StreamEndTrailer. Other requests are not affected.
func WithStreamsEnd(ctx context.Context, end <-chan struct{}) context.Context {
	return context.WithValue(ctx, streamsEndKey{}, end)
}

// streamsEnd is the request's server's end channel; nil (never ready in a
// select) when the server gave none.
func streamsEnd(r *http.Request) <-chan struct{} {
	end, _ := r.Context().Value(streamsEndKey{}).(<-chan struct{})
	return end
}

// streamContext is r's context, also cancelled when the server ends its
// streams.
func streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	if end := streamsEnd(r); end != nil {
		go func() {
			select {
			case <-end:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	return ctx, cancel
}

// serverEnding says whether r's server has ended its streams.
func serverEnding(r *http.Request) bool {
	select {
	case <-streamsEnd(r):
		return true
	default:
		return false
	}
}

// streamEndWrites is how long a stream's writes may still take once the
// server ends its streams: a follower that stopped reading would
// otherwise hold a write, and Shutdown with it, until its own timeout.
const streamEndWrites = 2 * time.Second

// bound gives w's writes a deadline of streamEndWrites when r's server
// ends its streams, a write already blocked included (a connection's
// deadline applies to pending writes too). Call the returned func when the
// stream ends.
func bound(w http.ResponseWriter, r *http.Request) (stop func()) {
	end := streamsEnd(r)
	if end == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-end:
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(streamEndWrites))
		case <-done:
		}
	}()
	return func() { close(done) }
}
