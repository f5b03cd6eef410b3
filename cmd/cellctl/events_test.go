package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/fakes"
)

// An agent that shuts down ends `events --follow` with a stream_ended
// event: cellctl says so, with where to resume, instead of hanging.
func TestEventsFollowEndsWhenTheAgentShutsDown(t *testing.T) {
	client := &fakes.FakeClient{}
	client.EventsStub = func(ctx context.Context, since uint64) (<-chan executor.Event, error) {
		ch := make(chan executor.Event, 2)
		ch <- executor.Event{Seq: 8, Type: executor.EventContainerReserved, GUID: "g1"}
		ch <- executor.Event{Seq: 8, Type: executor.EventStreamEnded, Message: "the agent is shutting down"}
		return ch, nil // never closed: the stream_ended event alone ends the command
	}
	var out bytes.Buffer
	err := (&cli{client: client, out: &out}).events(context.Background(), []string{"--follow", "--since", "7"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "agent shut down") || !strings.Contains(err.Error(), "--since 8") {
		t.Fatalf("err = %v, want the agent shut down, resume with --since 8", err)
	}
	if !strings.Contains(out.String(), "container_reserved") || strings.Contains(out.String(), executor.EventStreamEnded) {
		t.Fatalf("printed %q: want the reservation, not the end marker", out.String())
	}
}
