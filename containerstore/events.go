package containerstore

import (
	"context"
	"sync"
	"time"

	"github.com/cellagent/cellagent/executor"
)

// eventHub keeps the last events in a ring and lets subscribers resume from
// a sequence number. Sequence numbers start at the agent's start time in
// milliseconds times 1000, so they keep growing across agent restarts and a
// client's old "since" never skips new events.
type eventHub struct {
	mu      sync.Mutex // guards everything below
	ring    []executor.Event
	start   int // index of the oldest event in ring
	n       int // number of events in ring
	next    uint64
	changed chan struct{} // closed and replaced on every publish
}

func newEventHub(size int, now time.Time) *eventHub {
	return &eventHub{ring: make([]executor.Event, size), next: uint64(now.UnixMilli()) * 1000, changed: make(chan struct{})}
}

func (h *eventHub) publish(ev executor.Event) executor.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next++
	ev.Seq = h.next
	idx := (h.start + h.n) % len(h.ring)
	if h.n == len(h.ring) {
		h.start = (h.start + 1) % len(h.ring)
	} else {
		h.n++
	}
	h.ring[idx] = ev
	close(h.changed)
	h.changed = make(chan struct{})
	return ev
}

// after answers the buffered events with Seq > since, whether some were
// already dropped, and a channel closed at the next publish.
func (h *eventHub) after(since uint64) ([]executor.Event, bool, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []executor.Event
	gap := false
	if h.n > 0 {
		oldest := h.ring[h.start].Seq
		gap = since != 0 && since+1 < oldest
	}
	for i := 0; i < h.n; i++ {
		ev := h.ring[(h.start+i)%len(h.ring)]
		if ev.Seq > since {
			out = append(out, ev)
		}
	}
	return out, gap, h.changed
}

// lastSeq is the sequence number of the newest event.
func (h *eventHub) lastSeq() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.next
}

// subscribe streams events after since until ctx ends. The goroutine is
// owned by the subscription and ends with ctx.
func (h *eventHub) subscribe(ctx context.Context, since uint64) <-chan executor.Event {
	ch := make(chan executor.Event, 64)
	go func() {
		defer close(ch)
		last := since
		evs, gap, changed := h.after(last)
		for {
			if gap {
				// The subscriber fell behind the ring (or asked for too
				// old a sequence): say so instead of skipping silently.
				select {
				case ch <- executor.Event{Type: executor.EventGap, Seq: last, Time: time.Now(), Message: "some events were dropped from the buffer; resync with GET /v1/containers"}:
				case <-ctx.Done():
					return
				}
			}
			for _, ev := range evs {
				select {
				case ch <- ev:
					last = ev.Seq
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
			evs, gap, changed = h.after(last)
		}
	}()
	return ch
}

// forGUID answers the buffered events about guid, oldest first, and whether
// the buffer still holds its beginning.
func (h *eventHub) forGUID(guid string) ([]executor.Event, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []executor.Event
	for i := 0; i < h.n; i++ {
		if ev := h.ring[(h.start+i)%len(h.ring)]; ev.GUID == guid {
			ev.Container = nil
			out = append(out, ev)
		}
	}
	complete := h.n < len(h.ring) || (len(out) > 0 &&
		(out[0].Type == executor.EventContainerReserved || out[0].Type == executor.EventContainerAdopted))
	return out, complete
}
