package executor

import (
	"context"
	"errors"
	"io"
)

// EventGap is the type of the synthetic event sent first when a subscriber
// asks for events older than the buffer still holds.
const EventGap = "events_dropped"

// EventStreamEnded is the type of the synthetic event sent last when the
// agent ends an event stream because it is shutting down. Its Seq is the
// last Seq the stream carried (0 when none): resume after it.
const EventStreamEnded = "stream_ended"

// StreamEndTrailer is the HTTP trailer a log stream ends with when the
// agent ended it because it is shutting down (value StreamEndShutdown).
const (
	StreamEndTrailer  = "Cellagent-Stream-End"
	StreamEndShutdown = "agent-shutdown"
)

// ErrAgentShutdown is what reading a log stream returns (instead of
// io.EOF) when the agent ended it because it is shutting down.
var ErrAgentShutdown = errors.New("the agent is shutting down and ended the stream")

//go:generate go tool counterfeiter -o ../fakes/fake_client.go . Client

// Client is everything an orchestrator or operator can ask of a cell.
// The container store implements it in-process; HTTPClient implements it
// over the agent's HTTP API.
type Client interface {
	Ping(ctx context.Context) error
	State(ctx context.Context) (CellState, error)
	// Allocate reserves many containers; the answer lists the ones that failed.
	Allocate(ctx context.Context, reqs []AllocationRequest) ([]AllocationFailure, error)
	// Run starts a reserved container.
	Run(ctx context.Context, guid string, req RunRequest) error
	// AllocateAndRun reserves and runs in one call.
	AllocateAndRun(ctx context.Context, guid string, req RunRequest) (Container, error)
	List(ctx context.Context) ([]Container, error)
	Get(ctx context.Context, guid string) (Container, error)
	Stop(ctx context.Context, guid string) error
	Delete(ctx context.Context, guid string) error
	// Events streams events with Seq > since until ctx ends. When since is
	// older than the buffer, the first event has Type EventGap.
	Events(ctx context.Context, since uint64) (<-chan Event, error)
	// Logs returns the container's output (see LogOptions); with
	// opts.Follow it stays open.
	Logs(ctx context.Context, guid string, opts LogOptions) (io.ReadCloser, error)
}

// Log sources: which output GET /v1/containers/{guid}/logs serves.
const (
	// LogSourceAll is the app's and the proxy's output, each line tagged
	// "[app] " or "[proxy] " (the default).
	LogSourceAll = "all"
	// LogSourceApp is the app's stdout and stderr, untouched.
	LogSourceApp = "app"
	// LogSourceProxy is the proxy's output, untouched.
	LogSourceProxy = "proxy"
)

// LogOptions selects what Logs reads.
type LogOptions struct {
	// Follow keeps the stream open for new output.
	Follow bool
	// Source is LogSourceAll (also when empty), LogSourceApp or
	// LogSourceProxy.
	Source string
}

// ValidateLogSource answers an InvalidRequest error for an unknown source.
func ValidateLogSource(source string) error {
	switch source {
	case "", LogSourceAll, LogSourceApp, LogSourceProxy:
		return nil
	}
	return NewError(ErrInvalidRequest, "unknown log source %q: use all, app or proxy", source)
}

// Image is an image in the agent's containerd namespace, usable as a run
// request's image.
type Image struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
}
