package diego_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

// measureRuns is CELLAGENT_DIEGO_MEASURE: how many starts to time (0:
// the measurement is skipped; it times, it does not assert speed).
func measureRuns() int {
	n, _ := strconv.Atoi(os.Getenv("CELLAGENT_DIEGO_MEASURE"))
	return n
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// startTimes are one start's latencies: until the control plane (BBS or
// the agent) says running, and until the route's router.register reached
// a NATS subscriber (routable).
type startTimes struct{ running, routable time.Duration }

// routableAfter waits for the first register of uri and answers how long
// after start it arrived.
func routableAfter(rec *routeRecorder, uri string, start time.Time) time.Duration {
	var at time.Time
	Eventually(func() bool { at = rec.registeredAt(uri); return !at.IsZero() }, waitLong, 10*time.Millisecond).Should(BeTrue())
	return at.Sub(start)
}

// timeDiegoStart desires a one-instance LRP and answers the time until
// BBS reports it RUNNING (polling actual-lrps every 50ms) and until its
// route is registered.
func timeDiegoStart(k *kit, agent *testagent.Agent, rec *routeRecorder, guid string) startTimes {
	start := time.Now()
	_, err := k.bbsctl(desiredLRP(guid, 1), "desire-lrp")
	Expect(err).NotTo(HaveOccurred())
	var t startTimes
	Eventually(func() (string, error) {
		lrps, err := k.actualLRPs(guid)
		t.running = time.Since(start)
		if err != nil || len(lrps) == 0 {
			return "", err
		}
		return lrps[0].State, nil
	}, waitLong, 50*time.Millisecond).Should(Equal("RUNNING"))
	t.routable = routableAfter(rec, guid+".example.com", start)
	_, err = k.bbsctl("", "remove-lrp", guid)
	Expect(err).NotTo(HaveOccurred())
	Eventually(func() []executor.Container { return diegoContainers(agent, guid) }, waitLong, 200*time.Millisecond).Should(BeEmpty())
	return t
}

// timeV1Start starts the same app, with the same kind of route, through
// /v1 and answers the time until the agent reports it running (polling
// every 50ms) and until its route is registered.
func timeV1Start(agent *testagent.Agent, rec *routeRecorder, guid string) startTimes {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	start := time.Now()
	_, err := agent.Client.AllocateAndRun(ctx, guid, executor.RunRequest{
		Resources: &executor.Resources{MemoryMB: 64, DiskMB: 64}, Image: "preloaded:busybox",
		Process: executor.Process{Path: "/app/server", Env: []string{fmt.Sprintf("PORT=%d", appPort)}, User: "vcap"},
		Ports:   []uint16{appPort}, Check: &executor.Check{TCP: &executor.TCPCheck{Port: appPort}},
		Routes: []executor.Route{{Hostnames: []string{guid + ".example.com"}, Port: appPort}}})
	Expect(err).NotTo(HaveOccurred())
	var t startTimes
	Eventually(func() (executor.State, error) {
		c, err := agent.Client.Get(ctx, guid)
		t.running = time.Since(start)
		return c.State, err
	}, waitLong, 50*time.Millisecond).Should(Equal(executor.StateRunning))
	t.routable = routableAfter(rec, guid+".example.com", start)
	Expect(agent.Client.Delete(ctx, guid)).To(Succeed())
	return t
}

// measure is a spec of the suite's Ordered container (see diego_test.go).
func measure(k func() *kit, agent func() *testagent.Agent) {
	It("measures desire-lrp to RUNNING and to routable next to a /v1 start (CELLAGENT_DIEGO_MEASURE=N)", func() {
		n := measureRuns()
		if n == 0 {
			Skip("set CELLAGENT_DIEGO_MEASURE=N to time N starts each way")
		}
		rec := recordRoutes(agent().NATSURL())
		var diego, v1 []startTimes
		for i := range n {
			diego = append(diego, timeDiegoStart(k(), agent(), rec, fmt.Sprintf("it-measure-%d", i)))
			v1 = append(v1, timeV1Start(agent(), rec, fmt.Sprintf("v1-measure-%d", i)))
		}
		pick := func(ts []startTimes, f func(startTimes) time.Duration) []time.Duration {
			out := make([]time.Duration, len(ts))
			for i, t := range ts {
				out[i] = f(t).Round(time.Millisecond)
			}
			return out
		}
		running := func(t startTimes) time.Duration { return t.running }
		routable := func(t startTimes) time.Duration { return t.routable }
		line := fmt.Sprintf("desire-lrp -> RUNNING: median %v (all %v); desire-lrp -> routable: median %v (all %v); "+
			"/v1 start -> running: median %v (all %v); /v1 start -> routable: median %v (all %v)",
			median(pick(diego, running)), pick(diego, running), median(pick(diego, routable)), pick(diego, routable),
			median(pick(v1, running)), pick(v1, running), median(pick(v1, routable)), pick(v1, routable))
		AddReportEntry("start latency", line)
		fmt.Fprintln(os.Stderr, "MEASURE", line)
	})
}
