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

// timeDiegoStart desires a one-instance LRP and answers the time until
// BBS reports it RUNNING, polling actual-lrps every 50ms.
func timeDiegoStart(k *kit, agent *testagent.Agent, guid string) time.Duration {
	start := time.Now()
	_, err := k.bbsctl(desiredLRP(guid, 1), "desire-lrp")
	Expect(err).NotTo(HaveOccurred())
	var took time.Duration
	Eventually(func() (string, error) {
		lrps, err := k.actualLRPs(guid)
		took = time.Since(start)
		if err != nil || len(lrps) == 0 {
			return "", err
		}
		return lrps[0].State, nil
	}, waitLong, 50*time.Millisecond).Should(Equal("RUNNING"))
	_, err = k.bbsctl("", "remove-lrp", guid)
	Expect(err).NotTo(HaveOccurred())
	Eventually(func() []executor.Container { return diegoContainers(agent, guid) }, waitLong, 200*time.Millisecond).Should(BeEmpty())
	return took
}

// timeV1Start starts the same app through /v1 and answers the time until
// the agent reports it running, polling every 50ms.
func timeV1Start(agent *testagent.Agent, guid string) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	start := time.Now()
	_, err := agent.Client.AllocateAndRun(ctx, guid, executor.RunRequest{
		Resources: &executor.Resources{MemoryMB: 64, DiskMB: 64}, Image: "preloaded:busybox",
		Process: executor.Process{Path: "/app/server", Env: []string{fmt.Sprintf("PORT=%d", appPort)}, User: "vcap"},
		Ports:   []uint16{appPort}, Check: &executor.Check{TCP: &executor.TCPCheck{Port: appPort}}})
	Expect(err).NotTo(HaveOccurred())
	var took time.Duration
	Eventually(func() (executor.State, error) {
		c, err := agent.Client.Get(ctx, guid)
		took = time.Since(start)
		return c.State, err
	}, waitLong, 50*time.Millisecond).Should(Equal(executor.StateRunning))
	Expect(agent.Client.Delete(ctx, guid)).To(Succeed())
	return took
}

// measure is a spec of the suite's Ordered container (see diego_test.go).
func measure(k func() *kit, agent func() *testagent.Agent) {
	It("measures desire-lrp to RUNNING next to a /v1 start (CELLAGENT_DIEGO_MEASURE=N)", func() {
		n := measureRuns()
		if n == 0 {
			Skip("set CELLAGENT_DIEGO_MEASURE=N to time N starts each way")
		}
		var diego, v1 []time.Duration
		for i := range n {
			diego = append(diego, timeDiegoStart(k(), agent(), fmt.Sprintf("it-measure-%d", i)))
			v1 = append(v1, timeV1Start(agent(), fmt.Sprintf("v1-measure-%d", i)))
		}
		line := fmt.Sprintf("desire-lrp -> RUNNING: median %v (all %v); /v1 start -> running: median %v (all %v)",
			median(diego), diego, median(v1), v1)
		AddReportEntry("start latency", line)
		fmt.Fprintln(os.Stderr, "MEASURE", line)
	})
}
