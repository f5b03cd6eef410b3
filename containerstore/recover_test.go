package containerstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	"go.uber.org/goleak"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/containerstore/containerstorefakes"
	"github.com/cellagent/cellagent/executor"
)

// diskRecord is the store's record file as an operator would find it in
// <data_dir>/containers/<guid>.json.
type diskRecord struct {
	Container executor.Container  `json:"container"`
	Request   executor.RunRequest `json:"request"`
	User      containerstore.User `json:"user"`
	NetNSPath string              `json:"netns_path,omitempty"`
	Overhead  int                 `json:"memory_overhead_mb"`
}

var _ = Describe("Recover", func() {
	var (
		clk     *fakeclock.FakeClock
		runtime *containerstorefakes.FakeContainerRuntime
		runner  *containerstorefakes.FakeTaskRunner
		routes  *containerstorefakes.FakeRouteHook
		network *containerstorefakes.FakeStep[containerstore.NetworkResult]
		tk      *tasks
		cfg     containerstore.Config
		deps    containerstore.Deps
		dataDir string
		ctx     context.Context
	)

	BeforeEach(func() {
		leakOpts := []goleak.Option{goleak.IgnoreCurrent(), ignoreGinkgo}
		DeferCleanup(func() { Expect(goleak.Find(leakOpts...)).To(Succeed()) })
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(context.Background())
		DeferCleanup(cancel)

		clk = fakeclock.NewFakeClock(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
		tk = &tasks{exits: map[string]chan containerstore.Exit{}}
		dataDir = GinkgoT().TempDir()
		runtime = &containerstorefakes.FakeContainerRuntime{}
		runtime.PrepareReturns(containerstore.User{UID: 2000, GID: 2000}, nil) // uid 0 needs privileged
		runner = &containerstorefakes.FakeTaskRunner{}
		runner.StartStub = func(_ context.Context, _ lager.Logger, guid string) (<-chan containerstore.Exit, error) {
			return tk.channel(guid), nil
		}
		runner.AttachStub = func(_ context.Context, _ lager.Logger, guid string) (<-chan containerstore.Exit, error) {
			return tk.channel(guid), nil
		}
		runner.SignalStub = func(_ context.Context, guid string, sig syscall.Signal) error {
			tk.exit(guid, 128+uint32(sig))
			return nil
		}
		routes = &containerstorefakes.FakeRouteHook{}
		network = &containerstorefakes.FakeStep[containerstore.NetworkResult]{}
		network.NameReturns("network")
		cfg = containerstore.Config{
			CellID: "cell-1", DataDir: dataDir,
			Capacity:           executor.ResourceTotals{MemoryMB: 1024, DiskMB: 4096, Containers: 10},
			ReservedExpiration: 4 * time.Second, DefaultStartTimeout: 10 * time.Second, DefaultStopGrace: 5 * time.Second,
			ProxyMemoryOverheadMB: 32,
		}
		deps = containerstore.Deps{Runtime: runtime, Tasks: runner, Clock: clk,
			Pipeline: containerstore.Pipeline{Network: network, Routes: routes}}
	})

	// start runs a store over dataDir until the spec ends.
	start := func() (*containerstore.Store, *eventRecorder, ifrit.Process) {
		GinkgoHelper()
		store, err := containerstore.New(lagertest.NewTestLogger("store"), cfg, deps)
		Expect(err).NotTo(HaveOccurred())
		evs, err := store.Events(ctx, 0)
		Expect(err).NotTo(HaveOccurred())
		rec := recordEvents(evs)
		process := ifrit.Background(store.Runner())
		Eventually(process.Ready()).Should(BeClosed())
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive(BeNil()))
		})
		return store, rec, process
	}

	writeRecord := func(state executor.State, guid string) {
		GinkgoHelper()
		r := diskRecord{
			Container: executor.Container{GUID: guid, State: state, Resources: executor.Resources{MemoryMB: 100, DiskMB: 10},
				InternalIP: "10.255.0.7", ExternalIP: "10.0.0.5", Ports: []executor.PortMapping{{ContainerPort: 8080, HostPort: 40001}}},
			Request:  executor.RunRequest{Image: "preloaded:busybox", Process: executor.Process{Path: "/app"}, Ports: []uint16{8080}},
			User:     containerstore.User{UID: 2000, GID: 2000},
			Overhead: 32,
		}
		b, err := json.Marshal(r)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(filepath.Join(dataDir, "containers", guid+".json"), b, 0o600)).To(Succeed())
	}

	typesOf := func(rec *eventRecorder, guid string) func() []string {
		return func() []string {
			var out []string
			for _, e := range rec.all() {
				if e.GUID == guid {
					out = append(out, e.Type)
				}
			}
			return out
		}
	}

	Context("with records on disk and containers in the runtime", func() {
		BeforeEach(func() {
			Expect(os.MkdirAll(filepath.Join(dataDir, "containers"), 0o700)).To(Succeed())
			writeRecord(executor.StateRunning, "run1")
			writeRecord(executor.StateRunning, "stop1")
			writeRecord(executor.StateRunning, "gone1")
			writeRecord(executor.StateReserved, "res1")
			writeRecord(executor.StateCompleted, "done1")
			Expect(os.WriteFile(filepath.Join(dataDir, "containers", "bad.json"), []byte("{"), 0o600)).To(Succeed())
			Expect(os.WriteFile(filepath.Join(dataDir, "containers", "x.json.tmp"), []byte("{}"), 0o600)).To(Succeed())
			Expect(os.WriteFile(filepath.Join(dataDir, "containers", ".y.json.tmp-123"), []byte("{"), 0o600)).To(Succeed())
			Expect(os.MkdirAll(filepath.Join(dataDir, "logs", "orphan1"), 0o700)).To(Succeed())
			Expect(os.MkdirAll(filepath.Join(dataDir, "logs", "run1"), 0o700)).To(Succeed())
			runtime.ListReturns([]containerstore.RuntimeContainer{
				{GUID: "run1", Status: containerstore.TaskRunning},
				{GUID: "stop1", Status: containerstore.TaskStopped, ExitStatus: 2},
				{GUID: "orphan1", Status: containerstore.TaskRunning},
			}, nil)
		})

		It("adopts running containers without signalling them", func() {
			store, rec, _ := start()
			c, err := store.Get(ctx, "run1")
			Expect(err).NotTo(HaveOccurred())
			Expect(c.State).To(Equal(executor.StateRunning))
			Expect(c.Ports).To(Equal([]executor.PortMapping{{ContainerPort: 8080, HostPort: 40001}}))
			Expect(runner.AttachCallCount()).To(Equal(1))
			_, _, guid := runner.AttachArgsForCall(0)
			Expect(guid).To(Equal("run1"))
			Expect(runner.SignalCallCount()).To(BeZero())
			Expect(runner.StartCallCount()).To(BeZero())
			Eventually(typesOf(rec, "run1")).Should(ContainElement(executor.EventContainerAdopted))
			Eventually(routes.RoutableCallCount).Should(Equal(1))
			_, inst := routes.RoutableArgsForCall(0)
			Expect(inst.GUID).To(Equal("run1"))
			Expect(inst.InternalIP).To(Equal("10.255.0.7"))
			Eventually(func() bool { c, _ := store.Get(ctx, "run1"); return c.Routable }).Should(BeTrue())

			By("supervising it again: its exit completes it")
			tk.exit("run1", 9)
			Eventually(func() string { c, _ := store.Get(ctx, "run1"); return c.RunResult.FailureReason }).
				Should(Equal("app exited with status 9"))
		})

		It("routes an adopted instance its verifier confirms unchanged without verifying it again, and verifies the others", func() {
			writeRecord(executor.StateRunning, "run2")
			runtime.ListReturns([]containerstore.RuntimeContainer{
				{GUID: "run1", Status: containerstore.TaskRunning}, {GUID: "run2", Status: containerstore.TaskRunning}}, nil)
			proxy := &confirmingStep{confirmed: map[string]bool{"run1": true}}
			deps.Pipeline.Proxy = proxy
			store, rec, _ := start()
			for _, g := range []string{"run1", "run2"} {
				Eventually(func() bool { c, _ := store.Get(ctx, g); return c.Routable }).Should(BeTrue(), g)
			}
			Expect(proxy.verifiedGUIDs()).To(Equal([]string{"run2"}))
			Expect(rec.all()).To(ContainElement(SatisfyAll(HaveField("GUID", "run1"), HaveField("Type", executor.EventContainerReady),
				HaveField("Message", "adopted: serves what it was last verified to serve (not verified again)"))))
		})

		// The checks cellinit runs in the container: their last report is
		// known when the proxy step's Adopt returns, and it sent it as a
		// Liveness notice too, which may reach the instance's goroutine
		// before its first route (and be settled there) or after it.
		It("does not route an adopted instance whose checks run in the container last reported failing, confirmed or verified, and routes it when they pass", func() {
			writeRecord(executor.StateRunning, "run2")
			runtime.ListReturns([]containerstore.RuntimeContainer{
				{GUID: "run1", Status: containerstore.TaskRunning}, {GUID: "run2", Status: containerstore.TaskRunning}}, nil)
			inbox := containerstore.NewInbox()
			deps.Inbox = inbox
			const sick = "http check on http://10.255.0.7:8080/: status 503"
			proxy := &reportingStep{confirmingStep: &confirmingStep{confirmed: map[string]bool{"run1": true}}, inbox: inbox,
				report: map[string]string{"run1": sick, "run2": sick}}
			deps.Pipeline.Proxy = proxy
			store, rec, _ := start()
			notReady := func(guid string) func() []executor.Event {
				return func() []executor.Event {
					var out []executor.Event
					for _, e := range rec.all() {
						if e.GUID == guid && e.Type == executor.EventContainerRoutable && e.Message == "not ready: "+sick {
							out = append(out, e)
						}
					}
					return out
				}
			}
			for _, g := range []string{"run1", "run2"} {
				Eventually(notReady(g)).ShouldNot(BeEmpty(), g)
			}
			Expect(routes.RoutableCallCount()).To(BeZero(), "registered while its checks fail")
			for _, g := range []string{"run1", "run2"} {
				c, err := store.Get(ctx, g)
				Expect(err).NotTo(HaveOccurred())
				Expect(c.Routable).To(BeFalse(), g)
				Expect(typesOf(rec, g)()).NotTo(ContainElement(executor.EventContainerReady), "confirmed or verified while its checks fail")
			}

			By("the checks pass again: routed, as any instance is")
			for _, g := range []string{"run1", "run2"} {
				proxy.pass(g)
			}
			for _, g := range []string{"run1", "run2"} {
				Eventually(func() bool { c, _ := store.Get(ctx, g); return c.Routable }).Should(BeTrue(), g)
			}
			Expect(routes.RoutableCallCount()).To(Equal(2))
		})

		// A restarted proxy that answers again (ProxyServing) says nothing
		// of the app: an instance whose checks failed before the restart,
		// and still fail (no Liveness notice: the answer did not change),
		// stays unrouted until they pass.
		It("does not route an instance again when its restarted proxy answers while its checks still report failing", func() {
			runtime.ListReturns([]containerstore.RuntimeContainer{{GUID: "run1", Status: containerstore.TaskRunning}}, nil)
			inbox := containerstore.NewInbox()
			deps.Inbox = inbox
			proxy := &reportingStep{confirmingStep: &confirmingStep{confirmed: map[string]bool{"run1": true}}, inbox: inbox,
				report: map[string]string{"run1": ""}}
			deps.Pipeline.Proxy = proxy
			store, rec, _ := start()
			routable := func() bool { c, _ := store.Get(ctx, "run1"); return c.Routable }
			Eventually(routable).Should(BeTrue())

			const sick = "http check on http://10.255.0.7:8080/: status 503"
			proxy.fail("run1", sick)
			Eventually(routable).Should(BeFalse())
			inbox.Send(containerstore.ProxyExited{GUID: "run1"})
			inbox.Send(containerstore.ProxyServing{GUID: "run1"})
			Eventually(func() []string {
				var out []string
				for _, e := range rec.all() {
					if e.GUID == "run1" && e.Type == executor.EventContainerRoutable {
						out = append(out, e.Message)
					}
				}
				return out
			}).Should(ContainElement("not ready: " + sick))
			Consistently(routable, 200*time.Millisecond).Should(BeFalse(), "routed by the proxy's answer while the app's checks fail")
			Expect(routes.RoutableCallCount()).To(Equal(1))

			proxy.pass("run1")
			Eventually(routable).Should(BeTrue())
			Expect(routes.RoutableCallCount()).To(Equal(2))
		})

		It("takes an adopted container's credentials from the credentials step, not from its record (a rotation does not rewrite the record)", func() {
			path := filepath.Join(dataDir, "containers", "run1.json")
			b, err := os.ReadFile(path)
			Expect(err).NotTo(HaveOccurred())
			var r diskRecord
			Expect(json.Unmarshal(b, &r)).To(Succeed())
			r.Container.Credentials = &executor.CredentialInfo{Serial: "stale", Rotations: 1}
			b, err = json.Marshal(r)
			Expect(err).NotTo(HaveOccurred())
			Expect(os.WriteFile(path, b, 0o600)).To(Succeed())
			onDisk := executor.CredentialInfo{Serial: "rotated-since", Rotations: 4}
			deps.Pipeline.Credentials = credentialsRestorer{info: onDisk}

			store, _, _ := start()
			c, err := store.Get(ctx, "run1")
			Expect(err).NotTo(HaveOccurred())
			Expect(c.Credentials).To(Equal(&onDisk))
		})

		It("completes containers whose task stopped while the agent was down", func() {
			store, _, _ := start()
			c, err := store.Get(ctx, "stop1")
			Expect(err).NotTo(HaveOccurred())
			Expect(c.State).To(Equal(executor.StateCompleted))
			Expect(c.RunResult.Failed).To(BeTrue())
			Expect(c.RunResult.FailureReason).To(Equal("app exited with status 2 while the agent was down"))
			Expect(c.RunResult.FailureCode).To(Equal(executor.FailureAppExited))
			Expect(c.RunResult.ExitStatus).To(HaveValue(Equal(2)))

			c, err = store.Get(ctx, "gone1")
			Expect(err).NotTo(HaveOccurred())
			Expect(c.State).To(Equal(executor.StateCompleted))
			Expect(c.RunResult.Retryable).To(BeTrue())
			Expect(c.RunResult.FailureReason).To(Equal("missing runtime container after agent restart"))
			Expect(c.RunResult.FailureCode).To(Equal(executor.FailureAgentRestart))

			c, err = store.Get(ctx, "done1")
			Expect(err).NotTo(HaveOccurred())
			Expect(c.State).To(Equal(executor.StateCompleted))

			var b []byte
			b, err = os.ReadFile(filepath.Join(dataDir, "containers", "stop1.json"))
			Expect(err).NotTo(HaveOccurred())
			Expect(string(b)).To(ContainSubstring(`"state":"completed"`))
		})

		It("removes runtime containers it has no record of, with their hooks' parts and logs", func() {
			store, rec, _ := start()
			Expect(runtime.DeleteCallCount()).To(Equal(1))
			_, _, guid := runtime.DeleteArgsForCall(0)
			Expect(guid).To(Equal("orphan1"))
			Expect(network.TeardownCallCount()).To(Equal(1))
			guid = network.TeardownArgsForCall(0)
			Expect(guid).To(Equal("orphan1"))
			Eventually(typesOf(rec, "orphan1")).Should(Equal([]string{executor.EventContainerOrphanGone}))
			_, err := store.Get(ctx, "orphan1")
			Expect(errors.Is(err, executor.ErrContainerNotFound)).To(BeTrue())
			Expect(filepath.Join(dataDir, "logs", "orphan1")).NotTo(BeADirectory())
			Expect(filepath.Join(dataDir, "logs", "run1")).To(BeADirectory())
		})

		It("drops reservation records, unreadable ones and writes a crash cut short", func() {
			store, _, _ := start()
			_, err := store.Get(ctx, "res1")
			Expect(errors.Is(err, executor.ErrContainerNotFound)).To(BeTrue())
			entries, err := os.ReadDir(filepath.Join(dataDir, "containers"))
			Expect(err).NotTo(HaveOccurred())
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			Expect(names).To(ConsistOf("run1.json", "stop1.json", "gone1.json", "done1.json"))
		})

		It("holds the capacity of every container it keeps", func() {
			store, _, _ := start()
			st, err := store.State(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(st.Available).To(Equal(executor.ResourceTotals{MemoryMB: 1024 - 4*132, DiskMB: 4096 - 4*10, Containers: 6}))
			Expect(st.Containers).To(HaveKeyWithValue("running", 1))
			Expect(st.Containers).To(HaveKeyWithValue("completed", 3))
		})
	})

	It("waits for the runtime to answer before it is ready", func() {
		runtime.ListReturnsOnCall(0, nil, errors.New("containerd: connection refused"))
		runtime.ListReturnsOnCall(1, nil, nil)
		store, err := containerstore.New(lagertest.NewTestLogger("store"), cfg, deps)
		Expect(err).NotTo(HaveOccurred())
		process := ifrit.Background(store.Runner())
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive())
		})
		Eventually(runtime.ListCallCount).Should(Equal(1))
		Consistently(process.Ready(), "50ms").ShouldNot(BeClosed())
		clk.WaitForWatcherAndIncrement(time.Second)
		Eventually(process.Ready()).Should(BeClosed())
		Expect(runtime.ListCallCount()).To(Equal(2))
	})

	It("adopts what an earlier agent over the same data dir ran", func() {
		first, _, process := start()
		_, err := first.AllocateAndRun(ctx, "g1", executor.RunRequest{
			Resources: &executor.Resources{MemoryMB: 128, DiskMB: 64},
			Image:     "preloaded:busybox", Process: executor.Process{Path: "/app"}, Ports: []uint16{8080},
		})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() executor.State { c, _ := first.Get(ctx, "g1"); return c.State }).Should(Equal(executor.StateRunning))
		process.Signal(os.Interrupt)
		Eventually(process.Wait()).Should(Receive(BeNil()))
		Expect(runner.SignalCallCount()).To(BeZero())

		runtime.ListReturns([]containerstore.RuntimeContainer{{GUID: "g1", Status: containerstore.TaskRunning}}, nil)
		second, _, _ := start()
		c, err := second.Get(ctx, "g1")
		Expect(err).NotTo(HaveOccurred())
		Expect(c.State).To(Equal(executor.StateRunning))
		Expect(c.Resources).To(Equal(executor.Resources{MemoryMB: 128, DiskMB: 64}))
		Expect(c.Ports).To(Equal([]executor.PortMapping{{ContainerPort: 8080, HostPort: 8080}}))
		Expect(runner.AttachCallCount()).To(Equal(1))
		Expect(runtime.DeleteCallCount()).To(BeZero())
		st, _ := second.State(ctx)
		Expect(st.Available.MemoryMB).To(Equal(1024 - 160))
	})
})

// credentialsRestorer plays the credentials step at recovery: it reads the
// instance's credentials back (from their directory, in the real one).
type credentialsRestorer struct{ info executor.CredentialInfo }

func (credentialsRestorer) Name() string { return "credentials" }
func (credentialsRestorer) Setup(context.Context, lager.Logger, containerstore.Instance) (containerstore.CredentialsResult, error) {
	return containerstore.CredentialsResult{}, nil
}
func (credentialsRestorer) Teardown(context.Context, lager.Logger, string) error { return nil }
func (c credentialsRestorer) Restore(context.Context, lager.Logger, containerstore.Instance) (containerstore.CredentialsResult, error) {
	info := c.info
	return containerstore.CredentialsResult{Info: &info}, nil
}

// confirmingStep plays the proxy step at recovery: it confirms the adopted
// instances in confirmed (AdoptConfirmer) and records what it verifies.
type confirmingStep struct {
	confirmed map[string]bool

	mu       sync.Mutex
	verified []string
}

func (*confirmingStep) Name() string { return "proxy" }
func (*confirmingStep) Setup(context.Context, lager.Logger, containerstore.Instance) (containerstore.ProxyResult, error) {
	return containerstore.ProxyResult{}, nil
}
func (*confirmingStep) Teardown(context.Context, lager.Logger, string) error { return nil }
func (s *confirmingStep) Verify(_ context.Context, _ lager.Logger, inst *containerstore.Instance) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.verified = append(s.verified, inst.GUID)
	return nil
}
func (s *confirmingStep) ConfirmedAtAdoption(inst *containerstore.Instance) bool {
	return s.confirmed[inst.GUID]
}

// reportingStep is a confirmingStep whose instances' liveness checks run
// outside the store (LivenessReporter), as cellinit's: Adopt records the
// last report, then sends it as a Liveness notice, as proxyhook's does.
type reportingStep struct {
	*confirmingStep
	inbox *containerstore.Inbox

	mu     sync.Mutex
	report map[string]string // by guid: why the checks fail, "" when they pass
}

var (
	_ containerstore.LivenessReporter = (*reportingStep)(nil)
	_ containerstore.Starter          = (*reportingStep)(nil)
)

func (s *reportingStep) ReportedLiveness(inst *containerstore.Instance) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.report[inst.GUID]; r != "" {
		return errors.New(r)
	}
	return nil
}
func (*reportingStep) Start(context.Context, lager.Logger, *containerstore.Instance) error {
	return nil
}
func (s *reportingStep) Adopt(_ context.Context, _ lager.Logger, inst *containerstore.Instance) error {
	s.mu.Lock()
	r := s.report[inst.GUID]
	s.mu.Unlock()
	if r != "" {
		s.inbox.Send(containerstore.Liveness{GUID: inst.GUID, Err: r})
	}
	return nil
}
func (*reportingStep) Stopping(lager.Logger, string) {}

// fail has guid's checks report failing: recorded, then sent.
func (s *reportingStep) fail(guid, reason string) {
	s.mu.Lock()
	s.report[guid] = reason
	s.mu.Unlock()
	s.inbox.Send(containerstore.Liveness{GUID: guid, Err: reason})
}

// pass has guid's checks report passing: recorded, then sent.
func (s *reportingStep) pass(guid string) {
	s.mu.Lock()
	s.report[guid] = ""
	s.mu.Unlock()
	s.inbox.Send(containerstore.Liveness{GUID: guid})
}

func (s *confirmingStep) verifiedGUIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.verified...)
}
