package containerstore

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3/lagertest"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("readyPoll", func() {
	It("waits an eighth of the time waited so far, between 2 ms and 100 ms", func() {
		Expect(readyPoll(0)).To(Equal(2 * time.Millisecond))
		Expect(readyPoll(8 * time.Millisecond)).To(Equal(2 * time.Millisecond))
		Expect(readyPoll(80 * time.Millisecond)).To(Equal(10 * time.Millisecond))
		Expect(readyPoll(time.Second)).To(Equal(100 * time.Millisecond))
		Expect(readyPoll(time.Minute)).To(Equal(100 * time.Millisecond))
	})

	It("finds a quick instance within an eighth of its start, with attempts growing like the logarithm", func() {
		attempts := func(until time.Duration) (n int, late time.Duration) {
			var t time.Duration
			for n = 1; t < until; n++ {
				t += readyPoll(t)
			}
			return n, t - until
		}
		n, late := attempts(20 * time.Millisecond)
		Expect(late).To(BeNumerically("<=", 20*time.Millisecond/8+time.Millisecond))
		Expect(n).To(BeNumerically("<=", 12))
		n, _ = attempts(500 * time.Millisecond)
		Expect(n).To(BeNumerically("<=", 40))
		n, _ = attempts(2 * time.Second)
		Expect(n).To(BeNumerically("<=", 60))
	})
})

// The listen gate (listenprobe) holds the readiness attempts back while
// nothing listens on the check's port in the instance's namespace; the
// caller's own namespace stands in for the container's here.
var _ = Describe("pollReady's listen gate", func() {
	var (
		s    *Store
		log  *lagertest.TestLogger
		port uint16
	)
	BeforeEach(func() {
		log = lagertest.NewTestLogger("store")
		s = &Store{deps: Deps{Clock: clock.NewClock()}, logger: log}
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		port = uint16(l.Addr().(*net.TCPAddr).Port)
		l.Close()
	})
	inst := func(netns string) *Instance {
		return &Instance{GUID: "g1", InternalIP: "127.0.0.1", NetNSPath: netns,
			Request: executor.RunRequest{Check: &executor.Check{TCP: &executor.TCPCheck{Port: port}}}}
	}
	poll := func(in *Instance, within time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		return s.pollReady(ctx, in)
	}

	It("answers that nothing listens, without a connect, until the app listens; then the check decides", func() {
		Expect(poll(inst("/proc/self/ns/net"), 100*time.Millisecond)).To(MatchError(ContainSubstring(
			"nothing listens on port " + strconv.Itoa(int(port)) + " yet")))
		listener := make(chan net.Listener, 1)
		go func() {
			time.Sleep(50 * time.Millisecond)
			l, _ := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(int(port)))
			listener <- l
		}()
		Expect(poll(inst("/proc/self/ns/net"), 5*time.Second)).To(Succeed())
		l := <-listener
		Expect(l).NotTo(BeNil())
		l.Close()
		Expect(log.LogMessages()).To(BeEmpty()) // no unavailable, failed or disagreeing probe
	})

	It("lets the check through once a second where the probe sees nothing, and leaves it to the check when it passes", func() {
		l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(int(port)))
		Expect(err).NotTo(HaveOccurred())
		defer l.Close()
		// A probe that misses the listener: it asks for another address.
		in := inst("/proc/self/ns/net")
		gate := s.openListenGate(in)
		defer gate.close()
		Expect(gate.probe).NotTo(BeNil())
		gate.ip = netip.MustParseAddr("127.0.0.2")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		started := time.Now()
		Expect(s.pollReadyGated(ctx, in, gate)).To(Succeed())
		Expect(time.Since(started)).To(BeNumerically(">=", listenGateRecheck))
		Expect(gate.probe).To(BeNil())
		Expect(log.LogMessages()).To(ContainElement(ContainSubstring("listen-probe-disagrees")))
	})

	It("leaves the attempts to the check when the probe stops answering, and says so", func() {
		in := inst("/proc/self/ns/net")
		gate := s.openListenGate(in)
		Expect(gate.probe).NotTo(BeNil())
		gate.probe.Close() // a lookup that fails from now on
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		Expect(s.pollReadyGated(ctx, in, gate)).To(MatchError(ContainSubstring("tcp check on 127.0.0.1"))) // the connect's error, not the gate's
		Expect(gate.probe).To(BeNil())
		Expect(log.LogMessages()).To(ContainElement(ContainSubstring("listen-probe-failed")))
	})

	It("leaves the attempts to the check where it cannot probe, and says so", func() {
		Expect(poll(inst("/nonexistent/netns"), 100*time.Millisecond)).To(MatchError(ContainSubstring("tcp check on 127.0.0.1"))) // the connect's error, not the gate's
		Expect(log.LogMessages()).To(ContainElement(ContainSubstring("listen-probe-unavailable")))
	})

	It("does not probe an instance on the host's network", func() {
		Expect(poll(inst(""), 100*time.Millisecond)).To(MatchError(ContainSubstring("tcp check on 127.0.0.1"))) // the connect's error, not the gate's
		Expect(log.LogMessages()).To(BeEmpty())
	})
})
