package containerstore

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("eventHub", func() {
	var (
		hub   *eventHub
		start time.Time
		ctx   context.Context
	)

	BeforeEach(func() {
		start = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
		hub = newEventHub(4, start)
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(context.Background())
		DeferCleanup(cancel)
	})

	publishN := func(n int) []executor.Event {
		var out []executor.Event
		for i := 0; i < n; i++ {
			out = append(out, hub.publish(executor.Event{Type: "t", GUID: "g"}))
		}
		return out
	}

	seqs := func(evs []executor.Event) []uint64 {
		var out []uint64
		for _, e := range evs {
			out = append(out, e.Seq)
		}
		return out
	}

	base := func() uint64 { return uint64(start.UnixMilli()) * 1000 }

	It("numbers events one by one from the start time in milliseconds times 1000", func() {
		evs := publishN(3)
		Expect(seqs(evs)).To(Equal([]uint64{base() + 1, base() + 2, base() + 3}))
		Expect(hub.lastSeq()).To(Equal(base() + 3))
	})

	It("numbers a later agent's events above an earlier agent's", func() {
		publishN(1000)
		later := newEventHub(4, start.Add(time.Millisecond))
		Expect(later.publish(executor.Event{}).Seq).To(BeNumerically(">", hub.lastSeq()))
	})

	It("answers the buffered events after since, in order, without a gap while nothing was dropped", func() {
		evs := publishN(3)
		got, gap, _ := hub.after(evs[0].Seq)
		Expect(gap).To(BeFalse())
		Expect(seqs(got)).To(Equal(seqs(evs[1:])))
	})

	It("keeps the newest events when the ring overflows and flags the gap", func() {
		evs := publishN(7)
		got, gap, _ := hub.after(evs[1].Seq)
		Expect(gap).To(BeTrue(), "events 3..3 of 7 are gone")
		Expect(seqs(got)).To(Equal(seqs(evs[3:])))

		// since just before the oldest kept event: nothing lost.
		got, gap, _ = hub.after(evs[2].Seq)
		Expect(gap).To(BeFalse())
		Expect(seqs(got)).To(Equal(seqs(evs[3:])))
	})

	It("closes the changed channel at the next publish", func() {
		_, _, changed := hub.after(0)
		Expect(changed).NotTo(BeClosed())
		publishN(1)
		Expect(changed).To(BeClosed())
	})

	Describe("subscribe", func() {
		It("sends a gap event first when since is older than the buffer, then what is kept", func() {
			evs := publishN(7)
			ch := hub.subscribe(ctx, evs[0].Seq)
			var first executor.Event
			Eventually(ch).Should(Receive(&first))
			Expect(first.Type).To(Equal(executor.EventGap))
			Expect(first.Seq).To(Equal(evs[0].Seq))
			for _, want := range evs[3:] {
				Eventually(ch).Should(Receive(HaveField("Seq", want.Seq)))
			}
			Consistently(ch, "20ms").ShouldNot(Receive())
		})

		It("resumes from since without loss and goes on with new events in order", func() {
			hub = newEventHub(4096, start)
			evs := publishN(10)
			ch := hub.subscribe(ctx, evs[4].Seq)
			done := make(chan struct{})
			go func() {
				defer close(done)
				publishN(500)
			}()
			var got []uint64
			for len(got) < 505 {
				var ev executor.Event
				Eventually(ch).Should(Receive(&ev))
				Expect(ev.Type).NotTo(Equal(executor.EventGap))
				got = append(got, ev.Seq)
			}
			for i, s := range got {
				Expect(s).To(Equal(evs[4].Seq+uint64(i)+1), "event %d", i)
			}
			Eventually(done).Should(BeClosed())
		})

		It("starts after the newest event for a since of the newest", func() {
			evs := publishN(3)
			ch := hub.subscribe(ctx, evs[2].Seq)
			Consistently(ch, "20ms").ShouldNot(Receive())
			next := hub.publish(executor.Event{Type: "next"})
			Eventually(ch).Should(Receive(HaveField("Seq", next.Seq)))
		})

		It("closes the channel when ctx ends, even with nobody reading", func() {
			cctx, cancel := context.WithCancel(ctx)
			ch := hub.subscribe(cctx, 0)
			publishN(4)
			cancel()
			Eventually(func() bool {
				select {
				case _, ok := <-ch:
					return !ok
				default:
					return false
				}
			}).Should(BeTrue())
		})
	})
})
