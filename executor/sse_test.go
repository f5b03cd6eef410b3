package executor_test

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("ReadSSE", func() {
	collect := func(stream string) ([]executor.Event, error) {
		var evs []executor.Event
		err := executor.ReadSSE(strings.NewReader(stream), func(ev executor.Event) bool {
			evs = append(evs, ev)
			return true
		})
		return evs, err
	}

	It("reads each blank-line-terminated event's data as JSON, ignoring id, event and comment lines", func() {
		evs, err := collect(": keep-alive\n\n" +
			"id: 7\nevent: container_reserved\ndata: {\"seq\":7,\"type\":\"container_reserved\",\"guid\":\"g1\"}\n\n" +
			": keep-alive\n\n" +
			"id: 8\nevent: container_deleted\ndata:{\"seq\":8,\"type\":\"container_deleted\",\"guid\":\"g1\"}\n\n")
		Expect(err).NotTo(HaveOccurred())
		Expect(evs).To(HaveLen(2))
		Expect(evs[0]).To(MatchFields(7, "container_reserved", "g1"))
		Expect(evs[1]).To(MatchFields(8, "container_deleted", "g1"))
	})

	It("joins an event's data lines", func() {
		evs, err := collect("data: {\"seq\":1,\ndata: \"type\":\"x\"}\n\n")
		Expect(err).NotTo(HaveOccurred())
		Expect(evs).To(ConsistOf(MatchFields(1, "x", "")))
	})

	It("accepts CRLF line endings", func() {
		evs, err := collect("id: 2\r\ndata: {\"seq\":2,\"type\":\"y\"}\r\n\r\n")
		Expect(err).NotTo(HaveOccurred())
		Expect(evs).To(ConsistOf(MatchFields(2, "y", "")))
	})

	It("drops an event the stream ended in the middle of", func() {
		evs, err := collect("data: {\"seq\":1,\"type\":\"a\"}\n\ndata: {\"seq\":2,\"type\":\"b\"}\n")
		Expect(err).NotTo(HaveOccurred())
		Expect(evs).To(ConsistOf(MatchFields(1, "a", "")))
	})

	It("stops when the callback says so", func() {
		calls := 0
		err := executor.ReadSSE(strings.NewReader("data: {\"seq\":1}\n\ndata: {\"seq\":2}\n\ndata: {\"seq\":3}\n\n"),
			func(executor.Event) bool { calls++; return calls < 2 })
		Expect(err).NotTo(HaveOccurred())
		Expect(calls).To(Equal(2))
	})

	It("fails on data that is not a JSON event", func() {
		evs, err := collect("data: {\"seq\":1}\n\ndata: not json\n\ndata: {\"seq\":3}\n\n")
		Expect(err).To(MatchError(ContainSubstring("decode event")))
		Expect(evs).To(HaveLen(1))
	})

	It("reads an event larger than the scanner's initial buffer", func() {
		big := strings.Repeat("m", 200<<10)
		evs, err := collect(`data: {"seq":1,"type":"big","message":"` + big + "\"}\n\n")
		Expect(err).NotTo(HaveOccurred())
		Expect(evs).To(HaveLen(1))
		Expect(evs[0].Message).To(HaveLen(200 << 10))
	})
})

// MatchFields matches an event's sequence number, type and guid.
func MatchFields(seq uint64, typ, guid string) OmegaMatcher {
	return And(
		WithTransform(func(e executor.Event) uint64 { return e.Seq }, Equal(seq)),
		WithTransform(func(e executor.Event) string { return e.Type }, Equal(typ)),
		WithTransform(func(e executor.Event) string { return e.GUID }, Equal(guid)),
	)
}
