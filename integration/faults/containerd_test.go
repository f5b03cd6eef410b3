// Regression spec: it found that a containerd restart completed every
// instance ("task wait failed: rpc error: code = Unavailable") while its
// task kept running, and that GET /v1/ping hung while containerd was away
// (fixed in 1190689).

package faults_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

const (
	containerdPidFile = "/run/cellagent-containerd/containerd.pid"
	containerdConfig  = "/run/cellagent-containerd/config.toml"
)

// startContainerd starts the private containerd the way the scripts do
// (a no-op when it already answers).
func startContainerd() error {
	start := time.Now()
	defer func() { GinkgoWriter.Printf("containerd started in %s\n", time.Since(start).Round(time.Millisecond)) }()
	// ctr waits 10s for an absent containerd by default: probe with 1s.
	out, err := exec.Command("bash", "-c", `source /work/main/scripts/lib.sh; ctr() { command ctr --connect-timeout 1s "$@"; }; start_containerd`).CombinedOutput()
	if err != nil {
		return fmt.Errorf("start_containerd: %v: %s", err, out)
	}
	return nil
}

func containerdAnswers() bool {
	return exec.Command("ctr", "--address", testagent.Socket(), "--connect-timeout", "1s", "version").Run() == nil
}

// stopContainerd stops the private containerd (SIGTERM, SIGKILL after 2s)
// and waits until the process is gone. Shims and tasks keep running.
func stopContainerd() {
	start := time.Now()
	defer func() { GinkgoWriter.Printf("containerd stopped in %s\n", time.Since(start).Round(time.Millisecond)) }()
	pid := containerdPid()
	Expect(syscall.Kill(pid, syscall.SIGTERM)).To(Succeed())
	deadline := time.Now().Add(2 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(time.Hour)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// containerdPid answers the pid of the private containerd: the one in the
// pid file when that is it, else the one process running with its config
// (the pid file goes stale when two start_containerd race).
func containerdPid() int {
	isPrivate := func(pid int) bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		return err == nil && len(args) == 3 && filepath.Base(args[0]) == "containerd" &&
			args[1] == "--config" && args[2] == containerdConfig && alive(pid)
	}
	if b, err := os.ReadFile(containerdPidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && isPrivate(pid) {
			return pid
		}
	}
	entries, err := os.ReadDir("/proc")
	Expect(err).NotTo(HaveOccurred())
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && isPrivate(pid) {
			pids = append(pids, pid)
		}
	}
	Expect(pids).To(HaveLen(1), "processes running containerd --config %s", containerdConfig)
	return pids[0]
}

// alive: the process exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

var _ = Describe("containerd restarted while instances run", func() {
	It("keeps every instance and its supervision, and the event sequence has no gap", func() {
		agent := startAgent("ftc", nil)
		guids := []string{"cr-1", "cr-2", "cr-3"}
		cs := map[string]executor.Container{}
		for _, g := range guids {
			_, err := agent.Client.AllocateAndRun(ctx, g, request(g+".example.com"))
			Expect(err).NotTo(HaveOccurred())
		}
		for _, g := range guids {
			_, err := agent.WaitState(g, executor.StateRunning, 60*time.Second)
			Expect(err).NotTo(HaveOccurred())
			Eventually(func() bool { c, _ := agent.Client.Get(ctx, g); cs[g] = c; return c.Routable }, 30*time.Second).Should(BeTrue())
		}
		events := collectEvents(agent, agent.LastSeq(ctx))

		By("stop containerd, restart it a few seconds later")
		// Other suites share this containerd: it comes back whatever
		// happens to this spec.
		DeferCleanup(func() {
			if !containerdAnswers() {
				Expect(startContainerd()).To(Succeed())
			}
		})
		down := time.Now()
		stopContainerd()
		Expect(containerdAnswers()).To(BeFalse())
		// Asked while containerd is away; checked once it is back, so
		// a hanging ping does not stretch the downtime.
		pingCtx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		pingStart := time.Now()
		pingErr := agent.Client.Ping(pingCtx)
		pingTook := time.Since(pingStart)
		cancel()
		if d := time.Until(down.Add(2 * time.Second)); d > 0 {
			time.Sleep(d)
		}
		Expect(startContainerd()).To(Succeed())
		downtime := time.Since(down)
		GinkgoWriter.Printf("containerd was down for %s; ping while down took %s: %v\n", downtime.Round(time.Millisecond), pingTook, pingErr)
		Eventually(func() error { return agent.Client.Ping(ctx) }, 15*time.Second, 100*time.Millisecond).Should(Succeed())
		Expect(pingErr).To(MatchError(executor.ErrUnavailable), "GET /v1/ping answers 503 at once while containerd is away")

		By("no instance is lost: all still run and stay routable")
		Consistently(func(g Gomega) {
			for _, guid := range guids {
				c, err := agent.Client.Get(ctx, guid)
				g.Expect(err).NotTo(HaveOccurred())
				if c.State != executor.StateRunning {
					listed, _ := agent.Client.List(ctx)
					inv, _ := testagent.TakeInventory(agent)
					g.Expect(c.State).To(Equal(executor.StateRunning), "%s: %s; inventory problems: %q", guid, c.RunResult.FailureReason, inv.Problems(listed))
				}
			}
		}, 6*time.Second, 250*time.Millisecond).Should(Succeed())
		for _, guid := range guids {
			Eventually(func() bool { c, _ := agent.Client.Get(ctx, guid); return c.Routable }, 20*time.Second).Should(BeTrue(), guid)
			answers(cs[guid])
		}

		By("stop and delete still work")
		Expect(agent.Client.Stop(ctx, "cr-1")).To(Succeed())
		c, err := agent.Client.Get(ctx, "cr-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(c.State).To(Equal(executor.StateCompleted))
		Expect(c.RunResult.Stopped).To(BeTrue(), c.RunResult.FailureReason)
		Expect(agent.Client.Delete(ctx, "cr-1")).To(Succeed())
		_, err = agent.Client.Get(ctx, "cr-1")
		Expect(err).To(MatchError(executor.ErrContainerNotFound))

		By("an app crash after the restart is noticed")
		_, _ = httpGet(fmt.Sprintf("http://%s:8080/exit?code=3", cs["cr-2"].InternalIP))
		c, err = agent.WaitState("cr-2", executor.StateCompleted, 20*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.RunResult.FailureReason).To(Equal("app exited with status 3"))
		c, err = agent.Client.Get(ctx, "cr-3")
		Expect(err).NotTo(HaveOccurred())
		Expect(c.State).To(Equal(executor.StateRunning))

		By("the event stream went on without a gap")
		Eventually(func() []executor.Event { return events.of(executor.EventContainerState, "cr-2") }, 5*time.Second).ShouldNot(BeEmpty())
		evs := events.all()
		Expect(events.isClosed()).To(BeFalse(), "the event stream stayed open")
		gaps := 0
		for i, ev := range evs {
			Expect(ev.Type).NotTo(Equal(executor.EventGap))
			if i > 0 && ev.Seq != evs[i-1].Seq+1 {
				gaps++
				GinkgoWriter.Printf("sequence gap: %d after %d\n", ev.Seq, evs[i-1].Seq)
			}
		}
		Expect(gaps).To(BeZero())
		for _, ev := range evs {
			GinkgoWriter.Printf("event %d %s %s %s\n", ev.Seq, ev.Type, ev.GUID, ev.Message)
		}

		expectNothingOrphaned(agent)
		deleteAllAndExpectEmpty(agent)
		tableRow(fmt.Sprintf("containerd restarted under 3 running instances (down %s)", downtime.Round(100*time.Millisecond)), 1,
			fmt.Sprintf("0 instances, 0 events (%d events, seq contiguous)", len(evs)))
	})
})
