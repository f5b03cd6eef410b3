package containerstore

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("eventHub subscriber that falls behind the ring", func() {
	It("is told about the events it missed (gap event) instead of skipping them silently", func() {
		hub := newEventHub(4, time.Unix(1, 0))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch := hub.subscribe(ctx, 0)
		// Fill the subscription's 64-slot channel without reading it.
		for i := 1; i <= 64; i++ {
			hub.publish(executor.Event{Type: "t"})
			Eventually(func() int { return len(ch) }).Should(Equal(i))
		}
		hub.publish(executor.Event{Type: "t"}) // the subscriber blocks sending this one
		for i := 0; i < 10; i++ {              // meanwhile the ring (4) overflows
			hub.publish(executor.Event{Type: "t"})
		}
		var prev uint64
		for i := 0; i < 70; i++ {
			var ev executor.Event
			Eventually(ch).Should(Receive(&ev))
			if ev.Type == executor.EventGap {
				return // told: fine
			}
			if prev != 0 {
				Expect(ev.Seq).To(Equal(prev+1), "events %d..%d were skipped without a gap event", prev+1, ev.Seq-1)
			}
			prev = ev.Seq
		}
	})
})
