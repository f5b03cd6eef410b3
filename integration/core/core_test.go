package core_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

func appRequest(port int) executor.RunRequest {
	return executor.RunRequest{
		Image:     "preloaded:busybox",
		Resources: &executor.Resources{MemoryMB: 64, DiskMB: 64, MaxPids: 64},
		Process:   executor.Process{Path: "/app/server", Args: []string{strconv.Itoa(port)}},
		Ports:     []uint16{uint16(port)},
		Check:     &executor.Check{HTTP: &executor.HTTPCheck{Port: uint16(port), Path: "/"}},
		StopGrace: executor.Duration(5 * time.Second),
	}
}

func get(url string) (string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// ctrList lists what containerd holds in ns: containers, tasks, snapshots.
func ctrList(ns, what string) string {
	args := []string{"--address", testagent.Socket(), "-n", ns}
	switch what {
	case "containers":
		args = append(args, "containers", "ls", "-q")
	case "tasks":
		args = append(args, "tasks", "ls")
	case "snapshots":
		args = append(args, "snapshots", "ls")
	}
	out, err := exec.Command("ctr", args...).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	return string(out)
}

var _ = Describe("cellagent on real containerd", func() {
	var (
		agent *testagent.Agent
		ctx   context.Context
	)

	startAgent := func(modify func(*config.Config)) {
		var err error
		name := fmt.Sprintf("core%d", GinkgoParallelProcess()) + strconv.FormatInt(time.Now().UnixNano()%100000, 10)
		agent, err = testagent.New(GinkgoT().TempDir(), name, modify)
		Expect(err).NotTo(HaveOccurred())
		Expect(agent.Start()).To(Succeed())
		DeferCleanup(func() {
			agent.Cleanup()
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Println(agent.LogText())
			}
		})
	}

	BeforeEach(func() {
		ctx = context.Background()
	})

	Describe("the lifecycle", func() {
		BeforeEach(func() { startAgent(nil) })

		It("runs, stops and deletes an instance, leaving nothing behind", func() {
			port, _ := testagent.FreePort()
			c, err := agent.Client.AllocateAndRun(ctx, "life-1", appRequest(port))
			Expect(err).NotTo(HaveOccurred())
			Expect(c.State).To(BeElementOf(executor.StateInitializing, executor.StateCreated, executor.StateRunning))

			c, err = agent.WaitState("life-1", executor.StateRunning, 30*time.Second)
			Expect(err).NotTo(HaveOccurred())
			Expect(c.Ports).To(HaveLen(1))
			Expect(c.MemoryLimitBytes).To(Equal(uint64(64 << 20)))
			Expect(get(fmt.Sprintf("http://127.0.0.1:%d/", port))).To(ContainSubstring("hello from life-1"))

			By("the memory limit is in the container's cgroup")
			limit, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", agent.Config.Containerd.Namespace, "life-1", "memory.limit_in_bytes"))
			Expect(err).NotTo(HaveOccurred())
			Expect(strings.TrimSpace(string(limit))).To(Equal(strconv.Itoa(64 << 20)))

			By("the app runs as the non-root default user")
			env, err := get(fmt.Sprintf("http://127.0.0.1:%d/env", port))
			Expect(err).NotTo(HaveOccurred())
			Expect(env).To(ContainSubstring("CF_INSTANCE_GUID=life-1"))
			Expect(env).To(ContainSubstring("HOME=")) // process env exists
			status, err := os.ReadFile(fmt.Sprintf("/proc/%s/status", appPid(agent, "life-1")))
			Expect(err).NotTo(HaveOccurred())
			Expect(string(status)).To(MatchRegexp(`Uid:\s+2000\s`))

			By("logs show the app's output")
			rc, err := agent.Client.Logs(ctx, "life-1", executor.LogOptions{})
			Expect(err).NotTo(HaveOccurred())
			out, _ := io.ReadAll(rc)
			rc.Close()
			Expect(string(out)).To(ContainSubstring("demo-app listening"))

			By("stop sends SIGTERM and completes as stopped")
			Expect(agent.Client.Stop(ctx, "life-1")).To(Succeed())
			c, err = agent.Client.Get(ctx, "life-1")
			Expect(err).NotTo(HaveOccurred())
			Expect(c.State).To(Equal(executor.StateCompleted))
			Expect(c.RunResult.Stopped).To(BeTrue())
			Expect(c.RunResult.Failed).To(BeFalse())
			rc, _ = agent.Client.Logs(ctx, "life-1", executor.LogOptions{})
			out, _ = io.ReadAll(rc)
			rc.Close()
			Expect(string(out)).To(ContainSubstring("got SIGTERM"))

			By("delete removes container, task, snapshot and files")
			Expect(agent.Client.Delete(ctx, "life-1")).To(Succeed())
			_, err = agent.Client.Get(ctx, "life-1")
			Expect(err).To(MatchError(executor.ErrContainerNotFound))
			ns := agent.Config.Containerd.Namespace
			Expect(ctrList(ns, "containers")).NotTo(ContainSubstring("life-1"))
			Expect(ctrList(ns, "snapshots")).NotTo(ContainSubstring("cellagent-life-1"))
			Expect(filepath.Join(agent.Config.DataDir, "logs", "life-1")).NotTo(BeADirectory())
			Expect(filepath.Join(agent.Config.DataDir, "containers", "life-1.json")).NotTo(BeAnExistingFile())
			st, err := agent.Client.State(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(st.Available).To(Equal(st.Total))
		})

		It("reports the exit status of an app that exits by itself", func() {
			port, _ := testagent.FreePort()
			_, err := agent.Client.AllocateAndRun(ctx, "exits-1", appRequest(port))
			Expect(err).NotTo(HaveOccurred())
			_, err = agent.WaitState("exits-1", executor.StateRunning, 30*time.Second)
			Expect(err).NotTo(HaveOccurred())
			_, _ = get(fmt.Sprintf("http://127.0.0.1:%d/exit?code=3", port))
			c, err := agent.WaitState("exits-1", executor.StateCompleted, 20*time.Second)
			Expect(err).NotTo(HaveOccurred())
			Expect(c.RunResult.Failed).To(BeTrue())
			Expect(c.RunResult.FailureReason).To(Equal("app exited with status 3"))
			Expect(c.RunResult.ExitStatus).To(HaveValue(Equal(3)))
		})

		It("fails a container whose check never passes within start_timeout", func() {
			ports, err := testagent.FreePorts(2)
			Expect(err).NotTo(HaveOccurred())
			port, other := ports[0], ports[1]
			req := appRequest(port)
			req.Ports = []uint16{uint16(port), uint16(other)}
			req.Check = &executor.Check{TCP: &executor.TCPCheck{Port: uint16(other)}}
			req.StartTimeout = executor.Duration(2 * time.Second)
			_, err = agent.Client.AllocateAndRun(ctx, "timeout-1", req)
			Expect(err).NotTo(HaveOccurred())
			c, err := agent.WaitState("timeout-1", executor.StateCompleted, 30*time.Second)
			Expect(err).NotTo(HaveOccurred())
			Expect(c.RunResult.Failed).To(BeTrue())
			Expect(c.RunResult.FailureReason).To(HavePrefix("start timeout"))
			Expect(ctrList(agent.Config.Containerd.Namespace, "tasks")).NotTo(MatchRegexp(`timeout-1\s+\d+\s+RUNNING`))
		})

		It("fails a container whose user does not exist, before reserving", func() {
			req := appRequest(9999)
			req.Process.User = "nosuchuser"
			_, err := agent.Client.AllocateAndRun(ctx, "nouser-1", req)
			Expect(err).To(MatchError(executor.ErrInvalidRequest))
			Expect(err.Error()).To(ContainSubstring(`user "nosuchuser" does not exist`))
			_, err = agent.Client.Get(ctx, "nouser-1")
			Expect(err).To(MatchError(executor.ErrContainerNotFound))
		})

		It("streams events in order and resumes from a sequence number without loss", func() {
			evCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			evs, err := agent.Client.Events(evCtx, 0)
			Expect(err).NotTo(HaveOccurred())
			port, _ := testagent.FreePort()
			_, err = agent.Client.AllocateAndRun(ctx, "events-1", appRequest(port))
			Expect(err).NotTo(HaveOccurred())
			var states []string
			var firstSeq uint64
			Eventually(func() []string {
				for {
					select {
					case ev := <-evs:
						if ev.GUID == "events-1" && ev.Type == executor.EventContainerState {
							if firstSeq == 0 {
								firstSeq = ev.Seq
							}
							states = append(states, ev.Container.State.String())
						}
					default:
						return states
					}
				}
			}, 30*time.Second, 50*time.Millisecond).Should(Equal([]string{"initializing", "created", "running"}))
			cancel()

			By("resuming after the first state event replays the rest")
			resumed, err := agent.Client.Events(ctx, firstSeq)
			Expect(err).NotTo(HaveOccurred())
			var replay []string
			Eventually(func() []string {
				select {
				case ev := <-resumed:
					if ev.GUID == "events-1" && ev.Type == executor.EventContainerState {
						replay = append(replay, ev.Container.State.String())
					}
				default:
				}
				return replay
			}, 10*time.Second, 10*time.Millisecond).Should(Equal([]string{"created", "running"}))
		})

		It("follows logs as the app writes them", func() {
			port, _ := testagent.FreePort()
			_, err := agent.Client.AllocateAndRun(ctx, "follow-1", appRequest(port))
			Expect(err).NotTo(HaveOccurred())
			_, err = agent.WaitState("follow-1", executor.StateRunning, 30*time.Second)
			Expect(err).NotTo(HaveOccurred())
			fctx, cancel := context.WithCancel(ctx)
			defer cancel()
			rc, err := agent.Client.Logs(fctx, "follow-1", executor.LogOptions{Follow: true})
			Expect(err).NotTo(HaveOccurred())
			defer rc.Close()
			var buf safeBuffer
			go func() { _, _ = io.Copy(&buf, rc) }()
			Eventually(buf.String, 10*time.Second).Should(ContainSubstring("demo-app listening"))
			Expect(agent.Client.Stop(ctx, "follow-1")).To(Succeed())
			Eventually(buf.String, 10*time.Second).Should(ContainSubstring("got SIGTERM"))
		})
	})

	Describe("bad input", func() {
		BeforeEach(func() {
			startAgent(func(c *config.Config) { c.Capacity.MemoryMB = 1000; c.Capacity.DiskMB = 10000 })
		})

		rawDo := func(method, path, body string) (int, string) {
			req, err := http.NewRequest(method, agent.API+path, strings.NewReader(body))
			Expect(err).NotTo(HaveOccurred())
			if body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}

		It("answers each bad request with its error and changes nothing", func() {
			port, _ := testagent.FreePort()
			_, err := agent.Client.AllocateAndRun(ctx, "keep-1", appRequest(port))
			Expect(err).NotTo(HaveOccurred())
			_, err = agent.WaitState("keep-1", executor.StateRunning, 30*time.Second)
			Expect(err).NotTo(HaveOccurred())
			before, err := agent.Client.State(ctx)
			Expect(err).NotTo(HaveOccurred())

			good := `{"resources":{"memory_mb":64},"image":"preloaded:busybox","process":{"path":"/app/server"}}`
			cases := []struct {
				method, path, body string
				status             int
				code               string
			}{
				{"PUT", "/v1/containers/..%2Fetc", good, 400, "InvalidRequest"},
				{"PUT", "/v1/containers/-x", good, 400, "InvalidRequest"},
				{"PUT", "/v1/containers/" + strings.Repeat("a", 129), good, 400, "InvalidRequest"},
				{"PUT", "/v1/containers/bad-1", `{"resources":{"memory_mb":64},"image":"preloaded:busybox","process":{"path":"/app/server"},"bogus":1}`, 400, "InvalidRequest"},
				{"PUT", "/v1/containers/bad-1", `{"image":"preloaded:busybox","pad":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "RequestTooLarge"},
				{"PUT", "/v1/containers/keep-1", good, 409, "ContainerExists"},
				{"POST", "/v1/containers/nope-1/run", `{"image":"preloaded:busybox","process":{"path":"/app/server"}}`, 404, "ContainerNotFound"},
				{"PUT", "/v1/containers/bad-1", `{"resources":{"memory_mb":0},"image":"preloaded:busybox","process":{"path":"/app/server"}}`, 400, "InvalidRequest"},
				{"PUT", "/v1/containers/bad-1", `{"resources":{"memory_mb":-5},"image":"preloaded:busybox","process":{"path":"/app/server"}}`, 400, "InvalidRequest"},
				{"PUT", "/v1/containers/bad-1", `{"resources":{"memory_mb":64},"image":"preloaded:nosuch","process":{"path":"/app/server"}}`, 400, "InvalidRequest"},
				{"PUT", "/v1/containers/bad-1", `{"resources":{"memory_mb":64},"image":"docker.io/library/nosuch:latest","process":{"path":"/app/server"}}`, 400, "InvalidRequest"},
				{"PUT", "/v1/containers/bad-1", `{"resources":{"memory_mb":5000},"image":"preloaded:busybox","process":{"path":"/app/server"}}`, 409, "InsufficientResources"},
				{"PUT", "/v1/containers/bad-1", `not json`, 400, "InvalidRequest"},
				{"POST", "/v1/allocations", `{"allocations":[]}`, 400, "InvalidRequest"},
				{"GET", "/v1/containers/nope-1", ``, 404, "ContainerNotFound"},
				{"DELETE", "/v1/containers/nope-1", ``, 404, "ContainerNotFound"},
				{"POST", "/v1/containers/keep-1/run", `{"image":"preloaded:busybox","process":{"path":"/app/server"}}`, 409, "InvalidTransition"},
			}
			for _, tc := range cases {
				status, body := rawDo(tc.method, tc.path, tc.body)
				Expect(status).To(Equal(tc.status), "%s %s: %s", tc.method, tc.path, body)
				Expect(body).To(ContainSubstring(`"code":"`+tc.code+`"`), "%s %s", tc.method, tc.path)
				Expect(body).To(MatchRegexp(`"message":"[^"]+`), "%s %s", tc.method, tc.path)
			}
			after, err := agent.Client.State(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(after.Available).To(Equal(before.Available))
			Expect(after.Containers).To(Equal(before.Containers))
			c, err := agent.Client.Get(ctx, "keep-1")
			Expect(err).NotTo(HaveOccurred())
			Expect(c.State).To(Equal(executor.StateRunning))
			Expect(get(fmt.Sprintf("http://127.0.0.1:%d/", port))).To(ContainSubstring("keep-1"))
		})

		It("reserves many at once and reports each failure with its reason", func() {
			failures, err := agent.Client.Allocate(ctx, []executor.AllocationRequest{
				{GUID: "a-1", Resources: executor.Resources{MemoryMB: 100}},
				{GUID: "a-2", Resources: executor.Resources{MemoryMB: 950}},
				{GUID: "a-1", Resources: executor.Resources{MemoryMB: 10}},
				{GUID: "../x", Resources: executor.Resources{MemoryMB: 10}},
				{GUID: "a-3", Resources: executor.Resources{MemoryMB: 10}},
			})
			Expect(err).NotTo(HaveOccurred())
			Expect(failures).To(HaveLen(3))
			byGUID := map[string]string{}
			for _, f := range failures {
				byGUID[f.GUID] = f.Error.Code
			}
			Expect(byGUID).To(Equal(map[string]string{"a-2": "InsufficientResources", "a-1": "ContainerExists", "../x": "InvalidRequest"}))
			st, err := agent.Client.State(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(st.Containers["reserved"]).To(Equal(2))
			Expect(st.Available.MemoryMB).To(Equal(1000 - 110))

			By("a reserved container runs with POST run")
			port, _ := testagent.FreePort()
			req := appRequest(port)
			req.Resources = nil
			Expect(agent.Client.Run(ctx, "a-3", req)).To(Succeed())
			_, err = agent.WaitState("a-3", executor.StateRunning, 30*time.Second)
			Expect(err).NotTo(HaveOccurred())
		})
	})

	Describe("reservations", func() {
		BeforeEach(func() {
			startAgent(func(c *config.Config) { c.ReservedExpiration = executor.Duration(time.Second) })
		})

		It("expire when not run in time and release their resources", func() {
			before, _ := agent.Client.State(ctx)
			failures, err := agent.Client.Allocate(ctx, []executor.AllocationRequest{{GUID: "exp-1", Resources: executor.Resources{MemoryMB: 100}}})
			Expect(err).NotTo(HaveOccurred())
			Expect(failures).To(BeEmpty())
			Eventually(func() error { _, err := agent.Client.Get(ctx, "exp-1"); return err }, 10*time.Second).Should(MatchError(executor.ErrContainerNotFound))
			after, _ := agent.Client.State(ctx)
			Expect(after.Available).To(Equal(before.Available))
		})
	})

	Describe("agent restart", func() {
		BeforeEach(func() { startAgent(nil) })

		It("adopts running containers after kill -9, completes exited ones and removes orphans", func() {
			ports := map[string]int{}
			for _, g := range []string{"adopt-1", "adopt-2", "adopt-3"} {
				p, _ := testagent.FreePort()
				ports[g] = p
				_, err := agent.Client.AllocateAndRun(ctx, g, appRequest(p))
				Expect(err).NotTo(HaveOccurred())
			}
			for g := range ports {
				_, err := agent.WaitState(g, executor.StateRunning, 30*time.Second)
				Expect(err).NotTo(HaveOccurred())
			}
			pidBefore := appPid(agent, "adopt-1")
			before, _ := agent.Client.State(ctx)

			agent.Kill9()
			By("while the agent is down: adopt-2 exits, adopt-3 loses its record")
			_, _ = get(fmt.Sprintf("http://127.0.0.1:%d/exit?code=7", ports["adopt-2"]))
			Expect(os.Remove(filepath.Join(agent.Config.DataDir, "containers", "adopt-3.json"))).To(Succeed())
			Eventually(func() string { return ctrList(agent.Config.Containerd.Namespace, "tasks") }, 10*time.Second).Should(MatchRegexp(`adopt-2\s+\d+\s+STOPPED`))
			Expect(get(fmt.Sprintf("http://127.0.0.1:%d/", ports["adopt-1"]))).To(ContainSubstring("adopt-1"))

			Expect(agent.Start()).To(Succeed())
			c, err := agent.Client.Get(ctx, "adopt-1")
			Expect(err).NotTo(HaveOccurred())
			Expect(c.State).To(Equal(executor.StateRunning))
			Expect(appPid(agent, "adopt-1")).To(Equal(pidBefore), "the app was not restarted")

			c, err = agent.Client.Get(ctx, "adopt-2")
			Expect(err).NotTo(HaveOccurred())
			Expect(c.State).To(Equal(executor.StateCompleted))
			Expect(c.RunResult.FailureReason).To(Equal("app exited with status 7 while the agent was down"))

			_, err = agent.Client.Get(ctx, "adopt-3")
			Expect(err).To(MatchError(executor.ErrContainerNotFound))
			Expect(ctrList(agent.Config.Containerd.Namespace, "containers")).NotTo(ContainSubstring("adopt-3"))
			Expect(ctrList(agent.Config.Containerd.Namespace, "snapshots")).NotTo(ContainSubstring("cellagent-adopt-3"))

			By("resources: the orphan's are free, the others are still held")
			after, _ := agent.Client.State(ctx)
			Expect(after.Available.MemoryMB).To(Equal(before.Available.MemoryMB + 64))
			Expect(after.Available.Containers).To(Equal(before.Available.Containers + 1))

			By("the adopted container is still followed, stoppable and deletable")
			_, _ = get(fmt.Sprintf("http://127.0.0.1:%d/", ports["adopt-1"]))
			Expect(agent.Client.Stop(ctx, "adopt-1")).To(Succeed())
			c, _ = agent.Client.Get(ctx, "adopt-1")
			Expect(c.RunResult.Stopped).To(BeTrue())
			rc, err := agent.Client.Logs(ctx, "adopt-1", executor.LogOptions{})
			Expect(err).NotTo(HaveOccurred())
			out, _ := io.ReadAll(rc)
			rc.Close()
			Expect(string(out)).To(ContainSubstring("got SIGTERM"))
			Expect(agent.Client.Delete(ctx, "adopt-1")).To(Succeed())
			Expect(agent.Client.Delete(ctx, "adopt-2")).To(Succeed())
			final, _ := agent.Client.State(ctx)
			Expect(final.Available).To(Equal(final.Total))
		})

		It("keeps containers running when the agent exits on SIGTERM", func() {
			port, _ := testagent.FreePort()
			_, err := agent.Client.AllocateAndRun(ctx, "term-1", appRequest(port))
			Expect(err).NotTo(HaveOccurred())
			_, err = agent.WaitState("term-1", executor.StateRunning, 30*time.Second)
			Expect(err).NotTo(HaveOccurred())
			Expect(agent.Stop()).To(Succeed())
			Expect(get(fmt.Sprintf("http://127.0.0.1:%d/", port))).To(ContainSubstring("term-1"))
			Expect(agent.Start()).To(Succeed())
			c, err := agent.Client.Get(ctx, "term-1")
			Expect(err).NotTo(HaveOccurred())
			Expect(c.State).To(Equal(executor.StateRunning))
		})
	})
})

// appPid answers the host pid of guid's task.
func appPid(agent *testagent.Agent, guid string) string {
	out, err := exec.Command("ctr", "--address", testagent.Socket(), "-n", agent.Config.Containerd.Namespace, "tasks", "ls").CombinedOutput()
	Expect(err).NotTo(HaveOccurred())
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == guid {
			return f[1]
		}
	}
	Fail("no task for " + guid + ":\n" + string(out))
	return ""
}

type safeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
