package containerstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

// coveringReadiness is a Readiness whose Alive covers the TCP ports in
// covers (as the proxy's does for cellproxy).
type coveringReadiness struct {
	*containerstorefakes.FakeReadiness
	covers map[uint16]bool
}

// readyStep is a pipeline step that is a Readiness, as the proxy is.
type readyStep struct {
	*containerstorefakes.FakeStep[containerstore.ProxyResult]
	containerstore.Readiness
}

// coveringStep is a pipeline step whose readiness covers TCP ports.
type coveringStep struct {
	*containerstorefakes.FakeStep[containerstore.ProxyResult]
	coveringReadiness
}

func (c coveringReadiness) CoversCheck(_ *containerstore.Instance, check *executor.Check) bool {
	return check.TCP != nil && c.covers[check.TCP.Port]
}

// starterHook is a Proxy step with a process of its own (as the proxy's),
// whose Start runs start.
type starterHook struct {
	*containerstorefakes.FakeStep[containerstore.ProxyResult]
	start func(guid string) error
}

func (h starterHook) Start(_ context.Context, _ lager.Logger, inst *containerstore.Instance) error {
	return h.start(inst.GUID)
}
func (starterHook) Adopt(context.Context, lager.Logger, *containerstore.Instance) error { return nil }
func (starterHook) Stopping(lager.Logger, string)                                       {}

// explainingStep is a readiness step that explains an exit 127 as an app
// its first process could not start (as cellinit's state file does).
type explainingStep struct{ readyStep }

func (explainingStep) StartError(guid string, status int) error {
	if status != 127 {
		return nil
	}
	return fmt.Errorf("start task %s: could not start the app", guid)
}

// verifyingStep is a pipeline step that verifies (as the proxy does) with
// verify.
type verifyingStep struct {
	*containerstorefakes.FakeStep[containerstore.ProxyResult]
	verify func(ctx context.Context) error
}

func (v verifyingStep) Verify(ctx context.Context, _ lager.Logger, _ *containerstore.Instance) error {
	return v.verify(ctx)
}

// countingListener accepts and counts connections on 127.0.0.1.
func countingListener() (uint16, func() int) {
	GinkgoHelper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(l.Close)
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return uint16(l.Addr().(*net.TCPAddr).Port), func() int { return int(n.Load()) }
}

// step is a pipeline step named name that records its Setup and Teardown
// in order and answers an empty result.
func step[R containerstore.Result](order *calls, name string) *containerstorefakes.FakeStep[R] {
	h := &containerstorefakes.FakeStep[R]{}
	h.NameReturns(name)
	h.SetupStub = func(_ context.Context, _ lager.Logger, in containerstore.Instance) (R, error) {
		order.add("%s.Setup %s", name, in.GUID)
		var zero R
		return zero, nil
	}
	h.TeardownStub = func(_ context.Context, _ lager.Logger, guid string) error {
		order.add("%s.Teardown %s", name, guid)
		return nil
	}
	return h
}

// calls records, in order, what the fakes were asked to do.
type calls struct {
	mu  sync.Mutex
	log []string
}

func (c *calls) add(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = append(c.log, fmt.Sprintf(format, args...))
}

func (c *calls) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string{}, c.log...)
}

// tasks models the running tasks behind the TaskRunner fake: each started
// or attached task has an exit channel the spec (or a signal) feeds.
type tasks struct {
	mu         sync.Mutex
	exits      map[string]chan containerstore.Exit
	ignoreTerm bool // guarded by mu
}

func (t *tasks) setIgnoreTerm(v bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ignoreTerm = v
}

func (t *tasks) ignoresTerm() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ignoreTerm
}

// eventRecorder keeps what an event subscription delivered.
type eventRecorder struct {
	mu     sync.Mutex
	events []executor.Event
	done   chan struct{}
}

func recordEvents(evs <-chan executor.Event) *eventRecorder {
	r := &eventRecorder{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for ev := range evs {
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *eventRecorder) all() []executor.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]executor.Event{}, r.events...)
}

func (t *tasks) channel(guid string) chan containerstore.Exit {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch, ok := t.exits[guid]
	if !ok {
		ch = make(chan containerstore.Exit, 1)
		t.exits[guid] = ch
	}
	return ch
}

func (t *tasks) exit(guid string, status uint32) {
	select {
	case t.channel(guid) <- containerstore.Exit{Status: status}:
	default: // an exit is already pending
	}
}

var _ = Describe("Store", func() {
	var (
		clk     *fakeclock.FakeClock
		runtime *containerstorefakes.FakeContainerRuntime
		runner  *containerstorefakes.FakeTaskRunner
		routes  *containerstorefakes.FakeRouteHook
		network *containerstorefakes.FakeStep[containerstore.NetworkResult]
		creds   *containerstorefakes.FakeStep[containerstore.CredentialsResult]
		ready   *containerstorefakes.FakeReadiness
		tk      *tasks
		order   *calls
		cfg     containerstore.Config
		deps    containerstore.Deps
		store   *containerstore.Store
		inbox   *containerstore.Inbox
		process ifrit.Process
		ctx     context.Context
		rec     *eventRecorder
		dataDir string
		// presence is what the store last told Deps.Presence.
		presence atomic.Pointer[containerstore.Presence]
	)

	BeforeEach(func() {
		// Registered first so it runs last: nothing of the store may outlive it.
		leakOpts := []goleak.Option{goleak.IgnoreCurrent(), ignoreGinkgo}
		DeferCleanup(func() { Expect(goleak.Find(leakOpts...)).To(Succeed()) })

		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(context.Background())
		DeferCleanup(cancel)

		clk = fakeclock.NewFakeClock(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
		order = &calls{}
		tk = &tasks{exits: map[string]chan containerstore.Exit{}}
		dataDir = GinkgoT().TempDir()

		runtime = &containerstorefakes.FakeContainerRuntime{}
		runtime.PrepareReturns(containerstore.User{UID: 2000, GID: 2000}, nil)
		runtime.CreateStub = func(_ context.Context, _ lager.Logger, spec containerstore.ContainerSpec) error {
			order.add("runtime.Create %s", spec.GUID)
			return nil
		}
		runtime.DeleteStub = func(_ context.Context, _ lager.Logger, guid string) error {
			order.add("runtime.Delete %s", guid)
			return nil
		}

		runner = &containerstorefakes.FakeTaskRunner{}
		runner.StartStub = func(_ context.Context, _ lager.Logger, guid string) (<-chan containerstore.Exit, error) {
			order.add("tasks.Start %s", guid)
			return tk.channel(guid), nil
		}
		runner.AttachStub = func(_ context.Context, _ lager.Logger, guid string) (<-chan containerstore.Exit, error) {
			order.add("tasks.Attach %s", guid)
			return tk.channel(guid), nil
		}
		runner.SignalStub = func(_ context.Context, guid string, sig syscall.Signal) error {
			order.add("tasks.Signal %s %s", guid, sig)
			switch {
			case sig == syscall.SIGKILL:
				tk.exit(guid, 137)
			case sig == syscall.SIGTERM && !tk.ignoresTerm():
				tk.exit(guid, 143)
			}
			return nil
		}

		routes = &containerstorefakes.FakeRouteHook{}
		routes.RoutableStub = func(_ lager.Logger, inst *containerstore.Instance) error {
			order.add("routes.Routable %s", inst.GUID)
			return nil
		}
		routes.UnroutableStub = func(_ lager.Logger, guid string) error {
			order.add("routes.Unroutable %s", guid)
			return nil
		}

		network, creds = step[containerstore.NetworkResult](order, "network"), step[containerstore.CredentialsResult](order, "credentials")
		ready = &containerstorefakes.FakeReadiness{}

		cfg = containerstore.Config{
			CellID: "cell-1", Zone: "z1", DataDir: dataDir,
			Capacity:              executor.ResourceTotals{MemoryMB: 1024, DiskMB: 4096, Containers: 4},
			ReservedExpiration:    4 * time.Second,
			DefaultStartTimeout:   10 * time.Second,
			DefaultStopGrace:      5 * time.Second,
			ProxyMemoryOverheadMB: 32,
			ExternalIP:            "10.0.0.5",
		}
		inbox = containerstore.NewInbox()
		presence.Store(nil)
		deps = containerstore.Deps{Runtime: runtime, Tasks: runner, Clock: clk, Inbox: inbox,
			Pipeline: containerstore.Pipeline{Network: network, Credentials: creds, Routes: routes},
			Presence: func(p containerstore.Presence) { presence.Store(&p) }}
	})

	// stateFigures is State's answer as a Presence: what the store's
	// presence must be once nothing changes.
	stateFigures := func() containerstore.Presence {
		st, err := store.State(ctx)
		Expect(err).NotTo(HaveOccurred())
		n := 0
		for _, c := range st.Containers {
			n += c
		}
		return containerstore.Presence{Total: st.Total, Available: st.Available, Containers: n, Evacuating: st.Evacuating}
	}
	lastPresence := func() containerstore.Presence {
		if p := presence.Load(); p != nil {
			return *p
		}
		return containerstore.Presence{}
	}

	JustBeforeEach(func() {
		var err error
		store, err = containerstore.New(lagertest.NewTestLogger("store"), cfg, deps)
		Expect(err).NotTo(HaveOccurred())

		evs, err := store.Events(ctx, 0)
		Expect(err).NotTo(HaveOccurred())
		rec = recordEvents(evs)

		process = ifrit.Background(store.Runner())
		Eventually(process.Ready()).Should(BeClosed())
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive(BeNil()))
		})
		// Whatever a spec did, the figures the store last told its
		// presence are State's once it settles.
		DeferCleanup(func() {
			if deps.Presence != nil {
				Eventually(func() containerstore.Presence { return lastPresence() }).Should(Equal(stateFigures()))
			}
		})
	})

	// lifecycleEvents are the events whose order the specs check; others
	// (progress notes such as readiness or stop steps) may come between.
	lifecycleEvents := map[string]bool{
		executor.EventContainerReserved: true, executor.EventContainerState: true, executor.EventContainerRoutable: true,
		executor.EventContainerDeleted: true, executor.EventReservationExpired: true,
	}

	// eventsOf answers the types of the lifecycle events about guid so far,
	// in order.
	eventsOf := func(guid string) func() []string {
		return func() []string {
			var out []string
			for _, e := range rec.all() {
				if e.GUID == guid && lifecycleEvents[e.Type] {
					t := e.Type
					if e.Type == executor.EventContainerState && e.Container != nil {
						t += ":" + e.Container.State.String()
					}
					out = append(out, t)
				}
			}
			return out
		}
	}

	// notify sends n about guid and returns once the store applied it: a
	// marker note sent after it, applied in order, was published.
	markers := 0
	notify := func(guid string, n containerstore.Notice) {
		GinkgoHelper()
		markers++
		marker := fmt.Sprintf("marker %d", markers)
		inbox.Send(n)
		inbox.Send(containerstore.Note{GUID: guid, Type: "test_marker", Message: marker})
		Eventually(func() bool {
			for _, e := range rec.all() {
				if e.GUID == guid && e.Message == marker {
					return true
				}
			}
			return false
		}).Should(BeTrue())
	}

	get := func(guid string) executor.Container {
		GinkgoHelper()
		c, err := store.Get(ctx, guid)
		Expect(err).NotTo(HaveOccurred())
		return c
	}

	stateOf := func(guid string) func() executor.State {
		return func() executor.State {
			c, err := store.Get(ctx, guid)
			if err != nil {
				return executor.StateInvalid
			}
			return c.State
		}
	}

	available := func() executor.ResourceTotals {
		st, err := store.State(ctx)
		Expect(err).NotTo(HaveOccurred())
		return st.Available
	}

	runRequest := func() executor.RunRequest {
		return executor.RunRequest{
			Resources: &executor.Resources{MemoryMB: 128, DiskMB: 256},
			Image:     "preloaded:busybox",
			Process:   executor.Process{Path: "/app/server", Env: []string{"K=V"}},
			Ports:     []uint16{8080},
			Routes:    []executor.Route{{Hostnames: []string{"app.example.com"}, Port: 8080}},
			CPUWeight: 50,
			Tags:      map[string]string{"app": "a1"},
		}
	}

	runToRunning := func(guid string) {
		GinkgoHelper()
		_, err := store.AllocateAndRun(ctx, guid, runRequest())
		Expect(err).NotTo(HaveOccurred())
		Eventually(stateOf(guid)).Should(Equal(executor.StateRunning))
		Eventually(func() bool { return get(guid).Routable }).Should(BeTrue())
	}

	Describe("Allocate", func() {
		It("reserves what fits and reports each failure of the batch with its code", func() {
			failures, err := store.Allocate(ctx, []executor.AllocationRequest{
				{GUID: "g1", Resources: executor.Resources{MemoryMB: 256, DiskMB: 100}, Tags: map[string]string{"a": "b"}},
				{GUID: "../x", Resources: executor.Resources{MemoryMB: 1}},
				{GUID: "g1", Resources: executor.Resources{MemoryMB: 1}},
				{GUID: "g3", Resources: executor.Resources{MemoryMB: 2048}},
				{GUID: "g4", Resources: executor.Resources{MemoryMB: 0}},
				{GUID: "g5", Resources: executor.Resources{MemoryMB: 64}},
			})
			Expect(err).NotTo(HaveOccurred())
			codes := map[string]string{}
			messages := map[string]string{}
			for _, f := range failures {
				codes[f.GUID] = f.Error.Code
				messages[f.GUID] = f.Error.Message
			}
			Expect(codes).To(Equal(map[string]string{
				"../x": executor.CodeInvalidRequest,
				"g1":   executor.CodeContainerExists,
				"g3":   executor.CodeInsufficientResources,
				"g4":   executor.CodeInvalidRequest,
			}))
			Expect(messages["g3"]).To(Equal("insufficient resources: memory (need 2080 MB, 736 MB free of 1024 MB)"))

			Expect(available()).To(Equal(executor.ResourceTotals{MemoryMB: 1024 - 288 - 96, DiskMB: 4096 - 100, Containers: 2}))
			c := get("g1")
			Expect(c.State).To(Equal(executor.StateReserved))
			Expect(c.Tags).To(Equal(map[string]string{"a": "b"}))
			Expect(c.MemoryLimitBytes).To(BeEquivalentTo(288 << 20))
			Expect(get("g5").State).To(Equal(executor.StateReserved))
			Eventually(eventsOf("g1")).Should(Equal([]string{executor.EventContainerReserved}))
		})

		It("runs out of container slots", func() {
			var reqs []executor.AllocationRequest
			for i := 0; i < 5; i++ {
				reqs = append(reqs, executor.AllocationRequest{GUID: fmt.Sprintf("g%d", i), Resources: executor.Resources{MemoryMB: 1}})
			}
			failures, err := store.Allocate(ctx, reqs)
			Expect(err).NotTo(HaveOccurred())
			Expect(failures).To(HaveLen(1))
			Expect(failures[0].GUID).To(Equal("g4"))
			Expect(failures[0].Error.Message).To(Equal("insufficient resources: containers (all 4 slots taken)"))
		})

		It("refuses everything while evacuating", func() {
			Expect(store.Evacuate()).To(Succeed())
			failures, err := store.Allocate(ctx, []executor.AllocationRequest{{GUID: "g1", Resources: executor.Resources{MemoryMB: 1}}})
			Expect(err).NotTo(HaveOccurred())
			Expect(failures).To(HaveLen(1))
			Expect(errors.Is(failures[0].Error, executor.ErrEvacuating)).To(BeTrue())
			st, _ := store.State(ctx)
			Expect(st.Evacuating).To(BeTrue())
			Expect(st.Available).To(Equal(st.Total))
		})
	})

	Describe("presence", func() {
		It("tells Deps.Presence its figures at New and at every change: reservations, runs without ports, deletes, expiry, evacuation", func() {
			Expect(lastPresence()).To(Equal(containerstore.Presence{Total: cfg.Capacity, Available: cfg.Capacity}))
			_, err := store.Allocate(ctx, []executor.AllocationRequest{
				{GUID: "g1", Resources: executor.Resources{MemoryMB: 128, DiskMB: 10}},
				{GUID: "g2", Resources: executor.Resources{MemoryMB: 64}}})
			Expect(err).NotTo(HaveOccurred())
			Expect(lastPresence()).To(Equal(stateFigures()))
			Expect(lastPresence().Containers).To(Equal(2))

			req := runRequest()
			req.Resources, req.Ports, req.Routes = nil, nil, nil
			Expect(store.Run(ctx, "g2", req)).To(Succeed())
			Eventually(stateOf("g2")).Should(Equal(executor.StateRunning))
			Expect(lastPresence().Available.MemoryMB).To(Equal(1024-160-64), "the proxy's memory given back")
			Expect(lastPresence()).To(Equal(stateFigures()))

			Expect(store.Delete(ctx, "g2")).To(Succeed())
			Expect(lastPresence()).To(Equal(stateFigures()))
			clk.Increment(5 * time.Second)
			Eventually(stateOf("g1")).Should(Equal(executor.StateInvalid))
			Eventually(lastPresence).Should(Equal(containerstore.Presence{Total: cfg.Capacity, Available: cfg.Capacity}))

			Expect(store.Evacuate()).To(Succeed())
			Expect(lastPresence().Evacuating).To(BeTrue())
		})
	})

	Describe("reservation expiry", func() {
		JustBeforeEach(func() {
			failures, err := store.Allocate(ctx, []executor.AllocationRequest{{GUID: "g1", Resources: executor.Resources{MemoryMB: 128}}})
			Expect(err).NotTo(HaveOccurred())
			Expect(failures).To(BeEmpty())
		})

		It("releases a reservation not run within reserved_expiration, not before", func() {
			clk.Increment(4*time.Second - time.Millisecond)
			Consistently(stateOf("g1"), "100ms").Should(Equal(executor.StateReserved))
			Expect(available().MemoryMB).To(Equal(1024 - 160))

			clk.Increment(time.Second)
			Eventually(stateOf("g1")).Should(Equal(executor.StateInvalid))
			_, err := store.Get(ctx, "g1")
			Expect(errors.Is(err, executor.ErrContainerNotFound)).To(BeTrue())
			Expect(available()).To(Equal(cfg.Capacity))
			Eventually(eventsOf("g1")).Should(Equal([]string{executor.EventContainerReserved, executor.EventReservationExpired}))
			all := rec.all()
			Expect(all[len(all)-1].Message).To(Equal("reservation not run within 4s"))
		})

		It("keeps a reservation that was run in time", func() {
			req := runRequest()
			req.Resources = nil
			Expect(store.Run(ctx, "g1", req)).To(Succeed())
			Eventually(stateOf("g1")).Should(Equal(executor.StateRunning))
			clk.Increment(10 * time.Second)
			Consistently(stateOf("g1"), "100ms").Should(Equal(executor.StateRunning))
		})
	})

	Describe("AllocateAndRun validation", func() {
		It("happens before any reservation: a runtime refusal leaves capacity and events untouched", func() {
			runtime.ValidateReturns(executor.NewError(executor.ErrInvalidRequest, "image preloaded:nope not found"))
			seq := store.LastEventSeq()
			req := runRequest()
			req.Image = "preloaded:nope"
			_, err := store.AllocateAndRun(ctx, "g1", req)
			Expect(errors.Is(err, executor.ErrInvalidRequest)).To(BeTrue())
			Expect(err).To(MatchError("image preloaded:nope not found"))
			_, image, user := runtime.ValidateArgsForCall(0)
			Expect(image).To(Equal("preloaded:nope"))
			Expect(user).To(Equal("vcap"), "the default user")

			Expect(available()).To(Equal(cfg.Capacity))
			Expect(store.LastEventSeq()).To(Equal(seq))
			_, err = store.Get(ctx, "g1")
			Expect(errors.Is(err, executor.ErrContainerNotFound)).To(BeTrue())
			Expect(runtime.PrepareCallCount()).To(BeZero())
		})

		It("checks the request itself before asking the runtime", func() {
			req := runRequest()
			req.Resources = nil
			_, err := store.AllocateAndRun(ctx, "g1", req)
			Expect(err).To(MatchError("resources are required"))
			Expect(runtime.ValidateCallCount()).To(BeZero())
			Expect(available()).To(Equal(cfg.Capacity))
		})

		It("refuses resources on a run of a reservation", func() {
			_, err := store.Allocate(ctx, []executor.AllocationRequest{{GUID: "g1", Resources: executor.Resources{MemoryMB: 1}}})
			Expect(err).NotTo(HaveOccurred())
			err = store.Run(ctx, "g1", runRequest())
			Expect(errors.Is(err, executor.ErrInvalidRequest)).To(BeTrue())
			Expect(stateOf("g1")()).To(Equal(executor.StateReserved))
		})

		It("refuses to run what was never reserved", func() {
			req := runRequest()
			req.Resources = nil
			Expect(errors.Is(store.Run(ctx, "nope", req), executor.ErrContainerNotFound)).To(BeTrue())
		})

		It("refuses a second container with the same guid, keeping the first", func() {
			runToRunning("g1")
			_, err := store.AllocateAndRun(ctx, "g1", runRequest())
			Expect(errors.Is(err, executor.ErrContainerExists)).To(BeTrue())
			Expect(get("g1").State).To(Equal(executor.StateRunning))
			Expect(available().Containers).To(Equal(3))
		})
	})

	Describe("lifecycle", func() {
		BeforeEach(func() {
			// As the proxy's ports step: the proxy's memory.
			proxyPorts := &containerstorefakes.FakeStep[containerstore.ProxyPortsResult]{}
			proxyPorts.SetupReturns(containerstore.ProxyPortsResult{MemoryOverheadMB: 32}, nil)
			deps.Pipeline.ProxyPorts = proxyPorts
		})

		It("goes reserved -> initializing -> created -> running, then routable", func() {
			c, err := store.AllocateAndRun(ctx, "g1", runRequest())
			Expect(err).NotTo(HaveOccurred())
			Expect(c.GUID).To(Equal("g1"))
			Expect(c.State).To(BeElementOf(executor.StateInitializing, executor.StateCreated, executor.StateRunning))

			Eventually(stateOf("g1")).Should(Equal(executor.StateRunning))
			Eventually(eventsOf("g1")).Should(Equal([]string{
				executor.EventContainerReserved,
				executor.EventContainerState + ":initializing",
				executor.EventContainerState + ":created",
				executor.EventContainerState + ":running",
				executor.EventContainerRoutable,
			}))
			c = get("g1")
			Expect(c.Routable).To(BeTrue())
			Expect(c.InternalIP).To(Equal("127.0.0.1"))
			Expect(c.ExternalIP).To(Equal("10.0.0.5"))
			Expect(c.Ports).To(Equal([]executor.PortMapping{{ContainerPort: 8080, HostPort: 8080}}))
			Expect(c.MemoryLimitBytes).To(BeEquivalentTo(160 << 20))
			Expect(c.LogGUID).To(BeEmpty())
			Expect(c.Tags).To(Equal(map[string]string{"app": "a1"}))

			Expect(order.all()).To(Equal([]string{
				"network.Setup g1", "credentials.Setup g1", "runtime.Create g1", "tasks.Start g1", "routes.Routable g1",
			}))
			_, _, guid, image, user := runtime.PrepareArgsForCall(0)
			Expect([]string{guid, image, user}).To(Equal([]string{"g1", "preloaded:busybox", "vcap"}))
			_, _, spec := runtime.CreateArgsForCall(0)
			Expect(spec.GUID).To(Equal("g1"))
			Expect(spec.Path).To(Equal("/app/server"))
			Expect(spec.User).To(Equal(containerstore.User{UID: 2000, GID: 2000}))
			Expect(spec.MemoryLimitBytes).To(BeEquivalentTo(160 << 20))
			Expect(spec.CPUShares).To(BeEquivalentTo(512))
			Expect(spec.Hostname).To(Equal("g1"))
			Expect(spec.LogPath).To(Equal(filepath.Join(dataDir, "logs", "g1", "app.log")))
			Expect(spec.Env).To(ContainElements("CF_INSTANCE_GUID=g1", "CF_INSTANCE_INDEX=0", "CF_INSTANCE_IP=10.0.0.5",
				"CF_INSTANCE_INTERNAL_IP=127.0.0.1", "CF_INSTANCE_PORT=8080", "PORT=8080",
				`CF_INSTANCE_PORTS=[{"external":8080,"internal":8080}]`))
			Expect(spec.Env[len(spec.Env)-1]).To(Equal("K=V"), "the app's own env comes after the instance env")

			Expect(filepath.Join(dataDir, "containers", "g1.json")).To(BeAnExistingFile())
			Expect(runner.SignalCallCount()).To(BeZero())
		})

		It("completes failed with the exit status when the app exits by itself", func() {
			runToRunning("g1")
			tk.exit("g1", 3)
			Eventually(stateOf("g1")).Should(Equal(executor.StateCompleted))
			c := get("g1")
			Expect(c.RunResult.Failed).To(BeTrue())
			Expect(c.RunResult.FailureReason).To(Equal("app exited with status 3"))
			Expect(c.RunResult.FailureCode).To(Equal(executor.FailureAppExited))
			Expect(c.RunResult.ExitStatus).To(HaveValue(Equal(3)))
			Expect(c.RunResult.Stopped).To(BeFalse())
			Expect(c.Routable).To(BeFalse())
			Expect(order.all()).To(ContainElement("routes.Unroutable g1"))
			Expect(runner.SignalCallCount()).To(BeZero())
			Eventually(eventsOf("g1")).Should(ContainElement(executor.EventContainerState + ":completed"))
			Expect(available().MemoryMB).To(Equal(1024-160), "capacity is held until delete")
		})

		It("re-attaches after a lost wait, backing off while containerd does not answer, and keeps supervising", func() {
			runToRunning("g1")
			attaches := runner.AttachCallCount()
			down := 2
			runner.AttachStub = func(_ context.Context, _ lager.Logger, guid string) (<-chan containerstore.Exit, error) {
				if down > 0 {
					down--
					return nil, errors.New("connection refused")
				}
				return tk.channel(guid), nil
			}
			watchers := clk.WatcherCount()
			tk.channel("g1") <- containerstore.Exit{Err: errors.New("wait: connection reset")}
			Eventually(runner.AttachCallCount).Should(Equal(attaches + 1))
			Eventually(clk.WatcherCount).Should(Equal(watchers+1), "the first retry timer")
			clk.Increment(250 * time.Millisecond)
			Eventually(runner.AttachCallCount).Should(Equal(attaches + 2))
			Eventually(clk.WatcherCount).Should(Equal(watchers+1), "the second retry timer")
			clk.Increment(499 * time.Millisecond)
			Expect(clk.WatcherCount()).To(Equal(watchers+1), "the delay doubled: not due yet")
			clk.Increment(time.Millisecond)
			Eventually(runner.AttachCallCount).Should(Equal(attaches + 3))
			Expect(stateOf("g1")()).To(Equal(executor.StateRunning))

			tk.exit("g1", 4)
			Eventually(stateOf("g1")).Should(Equal(executor.StateCompleted))
			Expect(get("g1").RunResult.FailureCode).To(Equal(executor.FailureAppExited))
		})

		Context("when the app exits before it is ready", func() {
			BeforeEach(func() {
				deps.Pipeline.Proxy = readyStep{&containerstorefakes.FakeStep[containerstore.ProxyResult]{}, ready}
				ready.ReadyReturns(errors.New("not yet"))
			})

			It("completes failed with the exit status", func() {
				_, err := store.AllocateAndRun(ctx, "g1", runRequest())
				Expect(err).NotTo(HaveOccurred())
				Eventually(ready.ReadyCallCount).ShouldNot(BeZero())
				tk.exit("g1", 1)
				Eventually(stateOf("g1")).Should(Equal(executor.StateCompleted))
				c := get("g1")
				Expect(c.RunResult.FailureReason).To(Equal("app exited with status 1 before it was ready"))
				Expect(c.RunResult.FailureCode).To(Equal(executor.FailureAppExited))
				Expect(c.RunResult.ExitStatus).To(HaveValue(Equal(1)))
				Expect(runner.SignalCallCount()).To(BeZero(), "nothing to kill")
			})
		})

		Context("when a step's first process could not start the app (cellinit)", func() {
			BeforeEach(func() {
				proxy := &containerstorefakes.FakeStep[containerstore.ProxyResult]{}
				proxy.NameReturns("proxy")
				deps.Pipeline.Proxy = explainingStep{readyStep{proxy, ready}}
				ready.ReadyReturns(errors.New("not yet"))
			})

			It("completes as a start failure without an exit status, before or after it was ready", func() {
				_, err := store.AllocateAndRun(ctx, "g1", runRequest())
				Expect(err).NotTo(HaveOccurred())
				Eventually(ready.ReadyCallCount).ShouldNot(BeZero())
				tk.exit("g1", 127)
				Eventually(stateOf("g1")).Should(Equal(executor.StateCompleted))
				c := get("g1")
				Expect(c.RunResult.Failed).To(BeTrue())
				Expect(c.RunResult.FailureReason).To(Equal("start task g1: could not start the app"))
				Expect(c.RunResult.FailureCode).To(Equal(executor.FailureOther))
				Expect(c.RunResult.ExitStatus).To(BeNil())

				ready.ReadyReturns(nil)
				runToRunning("g2")
				tk.exit("g2", 127)
				Eventually(stateOf("g2")).Should(Equal(executor.StateCompleted))
				Expect(get("g2").RunResult.FailureReason).To(Equal("start task g2: could not start the app"))
				Expect(get("g2").RunResult.ExitStatus).To(BeNil())
			})

			It("keeps an exit the step does not explain as the app's", func() {
				ready.ReadyReturns(nil)
				runToRunning("g1")
				tk.exit("g1", 3)
				Eventually(stateOf("g1")).Should(Equal(executor.StateCompleted))
				Expect(get("g1").RunResult.FailureCode).To(Equal(executor.FailureAppExited))
				Expect(get("g1").RunResult.ExitStatus).To(HaveValue(Equal(3)))
			})
		})

		Context("when the app exits before its proxy can start", func() {
			BeforeEach(func() {
				proxy := &containerstorefakes.FakeStep[containerstore.ProxyResult]{}
				proxy.NameReturns("proxy")
				deps.Pipeline.Proxy = starterHook{FakeStep: proxy, start: func(guid string) error {
					tk.exit(guid, 3) // the app is gone: containerd refuses the exec
					return fmt.Errorf("start proxy: exec cellagent-proxy in %s: cannot exec in a stopped state: unknown", guid)
				}}
			})

			It("completes failed with the app's exit status, not the proxy's error", func() {
				_, err := store.AllocateAndRun(ctx, "g1", runRequest())
				Expect(err).NotTo(HaveOccurred())
				Eventually(stateOf("g1")).Should(Equal(executor.StateCompleted))
				c := get("g1")
				Expect(c.RunResult.Failed).To(BeTrue())
				Expect(c.RunResult.FailureReason).To(Equal("app exited with status 3 before it was ready"))
				Expect(c.RunResult.ExitStatus).To(HaveValue(Equal(3)))
				Expect(runner.SignalCallCount()).To(BeZero(), "nothing to kill")
			})
		})

		Context("when the proxy cannot start beside an app that keeps running", func() {
			BeforeEach(func() {
				proxy := &containerstorefakes.FakeStep[containerstore.ProxyResult]{}
				proxy.NameReturns("proxy")
				deps.Pipeline.Proxy = starterHook{FakeStep: proxy, start: func(guid string) error {
					return errors.New("start proxy: exec format error")
				}}
			})

			It("waits a moment for an exit, then kills the app and reports the proxy's error", func() {
				watchers := clk.WatcherCount()
				_, err := store.AllocateAndRun(ctx, "g1", runRequest())
				Expect(err).NotTo(HaveOccurred())
				Eventually(clk.WatcherCount).Should(BeNumerically(">", watchers), "the wait for the app's exit")
				Expect(stateOf("g1")()).To(Equal(executor.StateCreated))
				clk.Increment(time.Second)
				Eventually(stateOf("g1")).Should(Equal(executor.StateCompleted))
				c := get("g1")
				Expect(c.RunResult.Failed).To(BeTrue())
				Expect(c.RunResult.FailureReason).To(Equal("proxy: start proxy: exec format error"))
				Expect(order.all()).To(ContainElement("tasks.Signal g1 killed"))
			})
		})

		Context("when the proxy fails while the app exits by itself", func() {
			BeforeEach(func() { cfg.DrainWindow = 5 * time.Second })

			It("completes with the app's exit, and signals nothing", func() {
				runToRunning("g1")
				notify("g1", containerstore.Failed{GUID: "g1", Code: executor.FailureProxyFailed, Reason: "instance proxy failed: exited 6 times in a row (last status 255)"})
				// The failing stop unregistered the routes and drains (the
				// fake clock holds it there) when the app exits.
				Eventually(order.all).Should(ContainElement("routes.Unroutable g1"))
				tk.exit("g1", 3)
				Eventually(stateOf("g1")).Should(Equal(executor.StateCompleted))
				c := get("g1")
				Expect(c.RunResult.Failed).To(BeTrue())
				Expect(c.RunResult.FailureReason).To(Equal("app exited with status 3"))
				Expect(c.RunResult.FailureCode).To(Equal(executor.FailureAppExited), "the app's exit wins, code and all")
				Expect(c.RunResult.ExitStatus).To(HaveValue(Equal(3)))
				Expect(c.RunResult.Stopped).To(BeFalse())
				Consistently(runner.SignalCallCount, "100ms").Should(BeZero())

				notify("g1", containerstore.Failed{GUID: "g1", Code: executor.FailureProxyFailed, Reason: "instance proxy failed: too late"})
				Expect(get("g1").RunResult.FailureReason).To(Equal("app exited with status 3"))
			})

		})

		Context("when the proxy fails and the stop signals the app", func() {
			It("reports the proxy failure", func() {
				runToRunning("g1")
				notify("g1", containerstore.Failed{GUID: "g1", Code: executor.FailureProxyFailed, Reason: "instance proxy failed: exited 6 times in a row (last status 255)"})
				Eventually(stateOf("g1")).Should(Equal(executor.StateCompleted))
				c := get("g1")
				Expect(c.RunResult.FailureReason).To(Equal("instance proxy failed: exited 6 times in a row (last status 255)"))
				Expect(c.RunResult.FailureCode).To(Equal(executor.FailureProxyFailed))
				Expect(c.RunResult.ExitStatus).To(HaveValue(Equal(143)))
			})
		})

		Context("when the instance has no ports", func() {
			BeforeEach(func() {
				// As the proxy's ports step: a proxy (and its memory) only for ports.
				proxyPorts := &containerstorefakes.FakeStep[containerstore.ProxyPortsResult]{}
				proxyPorts.SetupStub = func(_ context.Context, _ lager.Logger, in containerstore.Instance) (containerstore.ProxyPortsResult, error) {
					if len(in.Request.Ports) > 0 {
						return containerstore.ProxyPortsResult{MemoryOverheadMB: 32}, nil
					}
					return containerstore.ProxyPortsResult{}, nil
				}
				deps.Pipeline.ProxyPorts = proxyPorts
			})

			noPorts := func() executor.RunRequest {
				req := runRequest()
				req.Ports, req.Routes = nil, nil
				return req
			}

			recordedOverhead := func(guid string) int {
				GinkgoHelper()
				b, err := os.ReadFile(filepath.Join(dataDir, "containers", guid+".json"))
				Expect(err).NotTo(HaveOccurred())
				var rec struct {
					Overhead int `json:"memory_overhead_mb"`
				}
				Expect(json.Unmarshal(b, &rec)).To(Succeed())
				return rec.Overhead
			}

			It("holds no proxy memory for it, in capacity, limit and record", func() {
				_, err := store.AllocateAndRun(ctx, "g1", noPorts())
				Expect(err).NotTo(HaveOccurred())
				Expect(available().MemoryMB).To(Equal(1024 - 128))
				Eventually(stateOf("g1")).Should(Equal(executor.StateRunning))
				Expect(get("g1").MemoryLimitBytes).To(BeEquivalentTo(128 << 20))
				_, _, spec := runtime.CreateArgsForCall(0)
				Expect(spec.MemoryLimitBytes).To(BeEquivalentTo(128 << 20))
				Expect(recordedOverhead("g1")).To(BeZero())

				runToRunning("g2")
				Expect(available().MemoryMB).To(Equal(1024 - 128 - 160))
				Expect(recordedOverhead("g2")).To(Equal(32))
			})

			It("gives back what a reservation held for the proxy when the run has no ports", func() {
				failures, err := store.Allocate(ctx, []executor.AllocationRequest{{GUID: "g1", Resources: *runRequest().Resources}})
				Expect(err).NotTo(HaveOccurred())
				Expect(failures).To(BeEmpty())
				Expect(available().MemoryMB).To(Equal(1024-160), "the ports are not known yet")

				req := noPorts()
				req.Resources = nil
				Expect(store.Run(ctx, "g1", req)).To(Succeed())
				Expect(available().MemoryMB).To(Equal(1024 - 128))
				Eventually(stateOf("g1")).Should(Equal(executor.StateRunning))
				Expect(get("g1").MemoryLimitBytes).To(BeEquivalentTo(128 << 20))

				Expect(store.Delete(ctx, "g1")).To(Succeed())
				Expect(available()).To(Equal(cfg.Capacity))
			})
		})

		Context("when the instance never gets ready", func() {
			BeforeEach(func() {
				deps.Pipeline.Proxy = readyStep{&containerstorefakes.FakeStep[containerstore.ProxyResult]{}, ready}
				ready.ReadyReturns(errors.New("proxy not listening"))
			})

			It("kills it after start_timeout and completes failed, not before", func() {
				req := runRequest()
				req.StartTimeout = executor.Duration(10 * time.Second)
				_, err := store.AllocateAndRun(ctx, "g1", req)
				Expect(err).NotTo(HaveOccurred())
				// The start timer exists once readiness is polled.
				Eventually(ready.ReadyCallCount).ShouldNot(BeZero())
				Expect(stateOf("g1")()).To(Equal(executor.StateCreated))

				clk.Increment(10*time.Second - time.Millisecond)
				Consistently(stateOf("g1"), "100ms").Should(Equal(executor.StateCreated))
				Expect(runner.SignalCallCount()).To(BeZero())

				clk.Increment(time.Millisecond)
				Eventually(stateOf("g1")).Should(Equal(executor.StateCompleted))
				c := get("g1")
				Expect(c.RunResult.Failed).To(BeTrue())
				Expect(c.RunResult.FailureReason).To(Equal("start timeout: not ready within 10s (proxy not listening)"))
				Expect(c.RunResult.FailureCode).To(Equal(executor.FailureStartTimeout))
				Expect(c.RunResult.Stopped).To(BeFalse())
				Expect(runner.SignalCallCount()).To(Equal(1))
				_, guid, sig := runner.SignalArgsForCall(0)
				Expect(guid).To(Equal("g1"))
				Expect(sig).To(Equal(syscall.SIGKILL))
				Expect(routes.RoutableCallCount()).To(BeZero())
			})
		})

		It("completes failed naming the hook whose Setup failed, before anything is created", func() {
			creds.SetupReturns(containerstore.CredentialsResult{}, errors.New("ca unavailable"))
			_, err := store.AllocateAndRun(ctx, "g1", runRequest())
			Expect(err).NotTo(HaveOccurred())
			Eventually(stateOf("g1")).Should(Equal(executor.StateCompleted))
			c := get("g1")
			Expect(c.RunResult.Failed).To(BeTrue())
			Expect(c.RunResult.FailureReason).To(Equal("credentials: ca unavailable"))
			Expect(c.RunResult.FailureCode).To(Equal(executor.FailureSetup))
			Expect(network.SetupCallCount()).To(Equal(1))
			Expect(runtime.CreateCallCount()).To(BeZero())
			Expect(runner.StartCallCount()).To(BeZero())
			Expect(routes.RoutableCallCount()).To(BeZero())
		})

		It("completes failed when the rootfs cannot be prepared", func() {
			runtime.PrepareReturns(containerstore.User{}, errors.New("no such user vcap"))
			_, err := store.AllocateAndRun(ctx, "g1", runRequest())
			Expect(err).NotTo(HaveOccurred())
			Eventually(stateOf("g1")).Should(Equal(executor.StateCompleted))
			Expect(get("g1").RunResult.FailureReason).To(Equal("prepare rootfs: no such user vcap"))
			Expect(get("g1").RunResult.FailureCode).To(Equal(executor.FailureSetup))
			Expect(network.SetupCallCount()).To(BeZero())
		})

		It("completes failed, before any rootfs is made, when the image cannot be pulled", func() {
			runtime.PullImageReturns(containerstore.ImageConfig{}, errors.New("image 127.0.0.1:5000/app:nope not found in its registry"))
			req := runRequest()
			req.Image = executor.DockerImagePrefix + "127.0.0.1:5000/app:nope"
			_, err := store.AllocateAndRun(ctx, "g1", req)
			Expect(err).NotTo(HaveOccurred())
			Eventually(stateOf("g1")).Should(Equal(executor.StateCompleted))
			Expect(get("g1").RunResult.FailureReason).To(Equal("image: image 127.0.0.1:5000/app:nope not found in its registry"))
			Expect(get("g1").RunResult.FailureCode).To(Equal(executor.FailureSetup))
			Expect(runtime.PrepareCallCount()).To(BeZero())
			Expect(network.SetupCallCount()).To(BeZero())
		})

		It("pulls with the request's login, then forgets it, and puts the image's env before everything else", func() {
			runtime.PullImageReturns(containerstore.ImageConfig{Env: []string{"PATH=/image/bin", "PORT=1", "FROM_IMAGE=1"}}, nil)
			req := runRequest()
			req.Image = executor.DockerImagePrefix + "127.0.0.1:5000/app:v1"
			req.ImageAuth = &executor.RegistryAuth{Username: "puller", Password: "s3cret"}
			_, err := store.AllocateAndRun(ctx, "g1", req)
			Expect(err).NotTo(HaveOccurred())
			Eventually(runtime.CreateCallCount).Should(Equal(1))
			_, _, image, auth := runtime.PullImageArgsForCall(0)
			Expect(image).To(Equal(req.Image))
			Expect(auth).To(Equal(&executor.RegistryAuth{Username: "puller", Password: "s3cret"}))
			_, _, spec := runtime.CreateArgsForCall(0)
			Expect(spec.Env[:3]).To(Equal([]string{"PATH=/image/bin", "PORT=1", "FROM_IMAGE=1"}))
			Expect(spec.Env).To(ContainElement("PORT=8080"), "the instance's PORT comes later and wins")
			record, err := os.ReadFile(filepath.Join(dataDir, "containers", "g1.json"))
			Expect(err).NotTo(HaveOccurred())
			Expect(string(record)).To(ContainSubstring("127.0.0.1:5000/app:v1"))
			Expect(string(record)).NotTo(ContainSubstring("s3cret"))
			Expect(string(record)).NotTo(ContainSubstring("puller"))
		})

		It("completes with insufficient_resources when a step finds no room, whatever the step's name", func() {
			network.SetupReturns(containerstore.NetworkResult{}, executor.NewError(executor.ErrInsufficientResources, "no free host ports"))
			_, err := store.AllocateAndRun(ctx, "g1", runRequest())
			Expect(err).NotTo(HaveOccurred())
			Eventually(stateOf("g1")).Should(Equal(executor.StateCompleted))
			Expect(get("g1").RunResult.FailureCode).To(Equal(executor.FailureInsufficientResources))
		})

		It("completes failed with the code and reason Fail was given, on the failing and the completed event", func() {
			runToRunning("g1")
			notify("g1", containerstore.Failed{GUID: "g1", Code: executor.FailureProxyFailed, Reason: "instance proxy failed: exited 6 times in a row"})
			Eventually(stateOf("g1")).Should(Equal(executor.StateCompleted))
			c := get("g1")
			Expect(c.RunResult.Failed).To(BeTrue())
			Expect(c.RunResult.FailureCode).To(Equal(executor.FailureProxyFailed))
			Expect(c.RunResult.FailureReason).To(Equal("instance proxy failed: exited 6 times in a row"))
			codes := func() []executor.FailureCode {
				var out []executor.FailureCode
				for _, e := range rec.all() {
					if e.GUID == "g1" && e.FailureCode != "" {
						out = append(out, e.FailureCode)
					}
				}
				return out
			}
			Eventually(codes).Should(Equal([]executor.FailureCode{executor.FailureProxyFailed, executor.FailureProxyFailed}))
			e, err := store.Explain(ctx, "g1")
			Expect(err).NotTo(HaveOccurred())
			Expect(e.FailureCode).To(Equal(executor.FailureProxyFailed))
		})

		It("refuses to run a container twice", func() {
			runToRunning("g1")
			req := runRequest()
			req.Resources = nil
			err := store.Run(ctx, "g1", req)
			Expect(errors.Is(err, executor.ErrInvalidTransition)).To(BeTrue())
			Expect(err).To(MatchError(ContainSubstring("running->initializing")))
		})
	})

	Describe("Stop", func() {
		It("withdraws routes, sends SIGTERM, then SIGKILL after stop_grace, and completes stopped", func() {
			tk.setIgnoreTerm(true)
			runToRunning("g1")
			watchers := clk.WatcherCount()
			stopped := make(chan error, 1)
			go func() { stopped <- store.Stop(ctx, "g1") }()

			Eventually(runner.SignalCallCount).Should(Equal(1))
			Eventually(clk.WatcherCount).Should(Equal(watchers + 1)) // the grace timer
			clk.Increment(5*time.Second - time.Millisecond)
			Consistently(runner.SignalCallCount, "100ms").Should(Equal(1))
			Expect(stopped).NotTo(Receive())

			clk.Increment(time.Millisecond)
			Eventually(stopped).Should(Receive(BeNil()))
			Expect(order.all()).To(HaveExactElements(
				"network.Setup g1", "credentials.Setup g1", "runtime.Create g1", "tasks.Start g1", "routes.Routable g1",
				"routes.Unroutable g1", "tasks.Signal g1 terminated", "tasks.Signal g1 killed",
				// and again once the exit is seen (unregistering repeats)
				"routes.Unroutable g1"))
			c := get("g1")
			Expect(c.State).To(Equal(executor.StateCompleted))
			Expect(c.RunResult).To(Equal(executor.RunResult{Stopped: true, ExitStatus: c.RunResult.ExitStatus}))
			Expect(c.RunResult.ExitStatus).To(HaveValue(Equal(137)))
			Expect(c.Routable).To(BeFalse())
		})

		Context("while a Verify is in flight", func() {
			verifying := make(chan struct{}, 1)
			BeforeEach(func() {
				// A Verify that never passes: it ends only by its context
				// (a real one retries for ConfirmTimeout, 10s).
				deps.Pipeline.Proxy = verifyingStep{FakeStep: &containerstorefakes.FakeStep[containerstore.ProxyResult]{}, verify: func(ctx context.Context) error {
					verifying <- struct{}{}
					<-ctx.Done()
					order.add("verify ended: %v", ctx.Err())
					return ctx.Err()
				}}
			})

			It("does not wait for it: the stop ends it, registers nothing and unregisters before SIGTERM", func() {
				_, err := store.AllocateAndRun(ctx, "g1", runRequest())
				Expect(err).NotTo(HaveOccurred())
				Eventually(verifying).Should(Receive())
				stopped := make(chan error, 1)
				go func() { stopped <- store.Stop(ctx, "g1") }()
				Eventually(stopped).Should(Receive(BeNil()))
				Expect(order.all()).To(HaveExactElements(
					"network.Setup g1", "credentials.Setup g1", "runtime.Create g1", "tasks.Start g1",
					"verify ended: context canceled", "routes.Unroutable g1", "tasks.Signal g1 terminated",
					"routes.Unroutable g1"))
				Expect(get("g1").RunResult.Stopped).To(BeTrue())
				for _, e := range rec.all() {
					Expect(e.Message).NotTo(ContainSubstring("not routable: context canceled"))
				}
			})
		})

		It("does not SIGKILL an app that ends on SIGTERM", func() {
			runToRunning("g1")
			Expect(store.Stop(ctx, "g1")).To(Succeed())
			Expect(runner.SignalCallCount()).To(Equal(1))
			_, _, sig := runner.SignalArgsForCall(0)
			Expect(sig).To(Equal(syscall.SIGTERM))
			c := get("g1")
			Expect(c.RunResult.Stopped).To(BeTrue())
			Expect(c.RunResult.Failed).To(BeFalse())
			Expect(c.RunResult.ExitStatus).To(HaveValue(Equal(143)))
		})

		It("completes a reservation stopped without signalling anything, and is repeatable", func() {
			_, err := store.Allocate(ctx, []executor.AllocationRequest{{GUID: "g1", Resources: executor.Resources{MemoryMB: 1}}})
			Expect(err).NotTo(HaveOccurred())
			Expect(store.Stop(ctx, "g1")).To(Succeed())
			Expect(store.Stop(ctx, "g1")).To(Succeed())
			c := get("g1")
			Expect(c.State).To(Equal(executor.StateCompleted))
			Expect(c.RunResult.Stopped).To(BeTrue())
			Expect(runner.SignalCallCount()).To(BeZero())
		})

		It("answers not found for an unknown container", func() {
			Expect(errors.Is(store.Stop(ctx, "nope"), executor.ErrContainerNotFound)).To(BeTrue())
		})
	})

	Describe("health monitoring", func() {
		var (
			port     uint16
			accepted func() int
			covering coveringReadiness
		)

		BeforeEach(func() {
			cfg.HealthInterval = 10 * time.Second
			port, accepted = countingListener()
			covering = coveringReadiness{FakeReadiness: ready, covers: map[uint16]bool{}}
			deps.Pipeline.Proxy = coveringStep{&containerstorefakes.FakeStep[containerstore.ProxyResult]{}, covering}
		})

		run := func() {
			GinkgoHelper()
			req := runRequest()
			req.Ports = []uint16{port}
			req.Routes = []executor.Route{{Hostnames: []string{"app.example.com"}, Port: port}}
			req.Check = &executor.Check{TCP: &executor.TCPCheck{Port: port}}
			_, err := store.AllocateAndRun(ctx, "g1", req)
			Expect(err).NotTo(HaveOccurred())
			Eventually(func() bool { return get("g1").Routable }).Should(BeTrue())
			Expect(accepted()).To(Equal(1), "the start's readiness check")
		}
		tick := func(aliveCalls int) {
			GinkgoHelper()
			Eventually(func() int { clk.Increment(cfg.HealthInterval); return ready.AliveCallCount() }).Should(BeNumerically(">=", aliveCalls))
		}

		It("runs the hooks' liveness and the app's check every interval, and unroutes an instance that stops being alive", func() {
			run()
			tick(1)
			// tick may advance more than one interval before the first round
			// runs (a loaded machine): each round dials the app exactly once.
			Eventually(func() int { return accepted() - ready.AliveCallCount() }).Should(Equal(1), "the app's own TCP check, once per round")
			ready.AliveReturns(errors.New("proxy not ready on 10.0.0.2:61001: no answer"))
			n := ready.AliveCallCount()
			tick(n + 1)
			Eventually(func() bool { return get("g1").Routable }).Should(BeFalse())
			ready.AliveReturns(nil)
			tick(ready.AliveCallCount() + 1)
			Eventually(func() bool { return get("g1").Routable }).Should(BeTrue(), "ready again: routed again")
		})

		It("follows Liveness notices of checks run in the container: unroutes with their reason and routes again, without a check of its own", func() {
			run()
			dialed := accepted()
			notify("g1", containerstore.Liveness{GUID: "g1", Err: "tcp check on 10.0.0.2:8080: connection refused"})
			Expect(get("g1").Routable).To(BeFalse())
			Expect(rec.all()).To(ContainElement(SatisfyAll(HaveField("Type", executor.EventContainerRoutable),
				HaveField("Message", "not ready: tcp check on 10.0.0.2:8080: connection refused"))))
			notify("g1", containerstore.Liveness{GUID: "g1"})
			Expect(get("g1").Routable).To(BeTrue())
			Expect(accepted()).To(Equal(dialed), "the store made no connection of its own")
		})

		Context("with a disk usage to measure", func() {
			var (
				mu       sync.Mutex
				measured int // guarded by mu
			)
			BeforeEach(func() {
				measured = 0
				deps.DiskUsage = func(context.Context, string) (int64, error) {
					mu.Lock()
					defer mu.Unlock()
					measured++
					return 0, nil
				}
			})

			It("measures it every other round, not every round", func() {
				run()
				tick(6)
				// A round checks liveness, then (every other one) the disk.
				Eventually(func() bool {
					mu.Lock()
					defer mu.Unlock()
					rounds := ready.AliveCallCount()
					return rounds >= 6 && measured == (rounds+1)/2
				}).Should(BeTrue())
			})
		})

		It("skips a TCP check of a port the liveness already proved", func() {
			covering.covers[port] = true
			run()
			tick(3)
			Consistently(accepted, 100*time.Millisecond).Should(Equal(1), "only the start's check dialled the app")
		})
	})

	Describe("evacuation", func() {
		BeforeEach(func() {
			cfg.EvacuationTimeout = time.Minute
		})

		It("deletes what is left at the timeout, tries a failed delete again, and then the runner ends", func() {
			runToRunning("g1")
			network.TeardownReturnsOnCall(0, errors.New("netns busy"))
			watchers := clk.WatcherCount()
			Expect(store.Evacuate()).To(Succeed())
			Eventually(clk.WatcherCount).Should(Equal(watchers+1), "the evacuation timer")
			clk.Increment(time.Minute)
			Eventually(network.TeardownCallCount).Should(Equal(1), "the first delete, which fails")
			Expect(get("g1").State).To(Equal(executor.StateCompleted), "stopped, routes first")
			Consistently(func() error { _, err := store.Get(ctx, "g1"); return err }, 100*time.Millisecond).Should(Succeed(), "no retry before the backoff")

			Eventually(func() error {
				clk.Increment(time.Second)
				_, err := store.Get(ctx, "g1")
				return err
			}).Should(MatchError(executor.ErrContainerNotFound))
			Expect(network.TeardownCallCount()).To(Equal(2))
			exited := process.Wait()
			Eventually(func() bool {
				clk.Increment(time.Second) // the run loop's ticker notices the empty cell
				return len(exited) > 0
			}).Should(BeTrue(), "evacuated: the runner ends")
			Expect(<-exited).To(Succeed())
		})
	})

	Describe("Logs", func() {
		read := func(opts executor.LogOptions) string {
			rc, err := store.Logs(ctx, "g1", opts)
			Expect(err).NotTo(HaveOccurred())
			defer rc.Close()
			b, err := io.ReadAll(rc)
			Expect(err).NotTo(HaveOccurred())
			return string(b)
		}

		It("serves the app's and the proxy's output, tagged by default, untouched for one source", func() {
			runToRunning("g1")
			logDir := filepath.Join(dataDir, "logs", "g1")
			Expect(os.MkdirAll(logDir, 0o700)).To(Succeed())
			Expect(read(executor.LogOptions{Source: executor.LogSourceProxy})).To(BeEmpty(), "no proxy output yet")
			Expect(os.WriteFile(filepath.Join(logDir, "app.log"), []byte("hello\nworld\n"), 0o600)).To(Succeed())
			Expect(os.WriteFile(filepath.Join(logDir, "proxy.log"), []byte("proxy ready\n"), 0o600)).To(Succeed())

			Expect(read(executor.LogOptions{})).To(Equal("[app] hello\n[app] world\n[proxy] proxy ready\n"))
			Expect(read(executor.LogOptions{Source: executor.LogSourceAll})).To(Equal("[app] hello\n[app] world\n[proxy] proxy ready\n"))
			Expect(read(executor.LogOptions{Source: executor.LogSourceApp})).To(Equal("hello\nworld\n"))
			Expect(read(executor.LogOptions{Source: executor.LogSourceProxy})).To(Equal("proxy ready\n"))
		})

		It("refuses an unknown source and an unknown container", func() {
			runToRunning("g1")
			_, err := store.Logs(ctx, "g1", executor.LogOptions{Source: "../../etc/passwd"})
			Expect(errors.Is(err, executor.ErrInvalidRequest)).To(BeTrue())
			_, err = store.Logs(ctx, "nope", executor.LogOptions{})
			Expect(errors.Is(err, executor.ErrContainerNotFound)).To(BeTrue())
		})
	})

	Describe("proxy notices", func() {
		It("are applied by the instance's lifecycle goroutine, in order, after a start in progress; a proxy exit sent mid-start is settled by the start's own route", func() {
			release := make(chan struct{})
			network.SetupStub = func(_ context.Context, _ lager.Logger, in containerstore.Instance) (containerstore.NetworkResult, error) {
				order.add("network.Setup %s", in.GUID)
				<-release
				return containerstore.NetworkResult{}, nil
			}
			_, err := store.AllocateAndRun(ctx, "g1", runRequest())
			Expect(err).NotTo(HaveOccurred())
			Eventually(order.all).Should(ContainElement("network.Setup g1"))
			// Sent mid-start: held for the lifecycle goroutine. The start's
			// route verifies the proxy as it serves then, so the queued
			// exit must not unroute the instance it has just verified; the
			// other notices still apply, in order.
			inbox.Send(containerstore.ProxyExited{GUID: "g1"})
			inbox.Send(containerstore.ProxyRestarting{GUID: "g1", Message: "proxy exited with status 1; restart 1 in 500ms"})
			close(release)
			Eventually(func() []executor.Event {
				var out []executor.Event
				for _, e := range rec.all() {
					if e.GUID == "g1" && (e.Type == executor.EventContainerRoutable || e.Type == executor.EventProxyRestarted) {
						out = append(out, e)
					}
				}
				return out
			}).Should(HaveExactElements(
				HaveField("Message", "proxy exited with status 1; restart 1 in 500ms"),
				HaveField("Message", "routable: 1 route(s) registered")))
			Expect(get("g1").Routable).To(BeTrue())

			// Once running, an exit unroutes and a return to service routes again.
			notify("g1", containerstore.ProxyExited{GUID: "g1"})
			Expect(get("g1").Routable).To(BeFalse())
			notify("g1", containerstore.ProxyServing{GUID: "g1"})
			Expect(get("g1").Routable).To(BeTrue())
			Expect(order.all()).To(HaveExactElements("network.Setup g1", "credentials.Setup g1", "runtime.Create g1", "tasks.Start g1",
				"routes.Routable g1", "routes.Unroutable g1", "routes.Routable g1"))

			notify("g1", containerstore.Note{GUID: "g1", Type: executor.EventRotationUnconfirmed, Message: "proxy serves the old serial"})
			Expect(rec.all()).To(ContainElement(SatisfyAll(HaveField("Type", executor.EventRotationUnconfirmed), HaveField("Message", "proxy serves the old serial"))))
		})

		It("are dropped for an unknown instance, and a completed one is not routed again", func() {
			runToRunning("g1")
			Expect(store.Stop(ctx, "g1")).To(Succeed())
			inbox.Send(containerstore.ProxyExited{GUID: "nope"})
			notify("g1", containerstore.ProxyServing{GUID: "g1"})
			Expect(get("g1").Routable).To(BeFalse())
			Expect(order.all()).To(HaveExactElements("network.Setup g1", "credentials.Setup g1", "runtime.Create g1", "tasks.Start g1",
				"routes.Routable g1", "routes.Unroutable g1", "tasks.Signal g1 terminated", "routes.Unroutable g1"))
		})
	})

	Describe("a CredentialsRotated notice", func() {
		It("shows the rotated certificate and publishes it, without rewriting the record (recovery reads credentials back from their own files)", func() {
			runToRunning("g1")
			record := filepath.Join(dataDir, "containers", "g1.json")
			before, err := os.Stat(record)
			Expect(err).NotTo(HaveOccurred())

			notify("g1", containerstore.CredentialsRotated{GUID: "g1", Info: executor.CredentialInfo{Serial: "abc", Rotations: 1}})
			Expect(get("g1").Credentials).To(Equal(&executor.CredentialInfo{Serial: "abc", Rotations: 1}))
			Eventually(func() []string {
				var types []string
				for _, e := range rec.all() {
					if e.GUID == "g1" {
						types = append(types, e.Type)
					}
				}
				return types
			}).Should(ContainElement(executor.EventCredentialsRotated))
			after, err := os.Stat(record)
			Expect(err).NotTo(HaveOccurred())
			Expect(os.SameFile(before, after)).To(BeTrue(), "the record was replaced")
		})
	})

	Describe("Delete", func() {
		It("stops, removes the runtime container, tears the hooks down in reverse order, and releases everything", func() {
			runToRunning("g1")
			record := filepath.Join(dataDir, "containers", "g1.json")
			Expect(record).To(BeAnExistingFile())
			logDir := filepath.Join(dataDir, "logs", "g1")
			Expect(os.MkdirAll(logDir, 0o700)).To(Succeed())
			Expect(os.WriteFile(filepath.Join(logDir, "app.log"), []byte("hello\n"), 0o600)).To(Succeed())
			Expect(available().MemoryMB).To(Equal(1024 - 160))

			Expect(store.Delete(ctx, "g1")).To(Succeed())
			Expect(order.all()[5:]).To(HaveExactElements(
				"routes.Unroutable g1", "tasks.Signal g1 terminated", "routes.Unroutable g1",
				"runtime.Delete g1", "credentials.Teardown g1", "network.Teardown g1"))
			Expect(available()).To(Equal(cfg.Capacity))
			Expect(record).NotTo(BeAnExistingFile())
			Expect(logDir).NotTo(BeADirectory())
			_, err := store.Get(ctx, "g1")
			Expect(errors.Is(err, executor.ErrContainerNotFound)).To(BeTrue())
			Eventually(eventsOf("g1")).Should(HaveExactElements(
				executor.EventContainerReserved,
				executor.EventContainerState+":initializing",
				executor.EventContainerState+":created",
				executor.EventContainerState+":running",
				executor.EventContainerRoutable,
				executor.EventContainerRoutable,
				executor.EventContainerState+":completed",
				executor.EventContainerDeleted))
			Expect(errors.Is(store.Delete(ctx, "g1"), executor.ErrContainerNotFound)).To(BeTrue())
		})

		It("releases a reservation without touching the runtime", func() {
			_, err := store.Allocate(ctx, []executor.AllocationRequest{{GUID: "g1", Resources: executor.Resources{MemoryMB: 100}}})
			Expect(err).NotTo(HaveOccurred())
			Expect(store.Delete(ctx, "g1")).To(Succeed())
			Expect(available()).To(Equal(cfg.Capacity))
			Expect(runtime.DeleteCallCount()).To(BeZero())
			Eventually(eventsOf("g1")).Should(Equal([]string{executor.EventContainerReserved, executor.EventContainerDeleted}))
		})

		It("runs every teardown step, keeps the container and its capacity when one fails, and can be retried", func() {
			runToRunning("g1")
			network.TeardownReturnsOnCall(0, errors.New("netns busy"))
			err := store.Delete(ctx, "g1")
			Expect(err).To(MatchError(And(ContainSubstring("retry the delete"), ContainSubstring("network: netns busy"))))
			Expect(runtime.DeleteCallCount()).To(Equal(1))
			Expect(creds.TeardownCallCount()).To(Equal(1))
			Expect(get("g1").State).To(Equal(executor.StateCompleted))
			Expect(available().MemoryMB).To(Equal(1024 - 160))

			Expect(store.Delete(ctx, "g1")).To(Succeed())
			Expect(available()).To(Equal(cfg.Capacity))
		})

		It("tells the teardown steps when the runtime could not delete the container (its processes may run)", func() {
			runToRunning("g1")
			var mayRun []bool
			network.TeardownStub = func(stepCtx context.Context, _ lager.Logger, _ string) error {
				mayRun = append(mayRun, containerstore.ProcessesMayRun(stepCtx))
				return nil
			}
			runtime.DeleteReturnsOnCall(0, errors.New("task will not die"))
			Expect(store.Delete(ctx, "g1")).To(MatchError(ContainSubstring("task will not die")))
			Expect(store.Delete(ctx, "g1")).To(Succeed())
			Expect(mayRun).To(Equal([]bool{true, false}))
		})
	})

	Describe("UpdateRoutes", func() {
		var seen []string // hostnames of each Routable call, in order
		JustBeforeEach(func() {
			seen = nil
			routes.RoutableStub = func(_ lager.Logger, inst *containerstore.Instance) error {
				var hosts []string
				for _, r := range inst.Request.Routes {
					hosts = append(hosts, r.Hostnames...)
				}
				seen = append(seen, strings.Join(hosts, ","))
				return nil
			}
		})

		It("registers the new routes of a running instance again, and withdraws them all when none are left", func() {
			runToRunning("g1")
			Expect(seen).To(Equal([]string{"app.example.com"}))
			tags := map[string]executor.MetricTagValue{"source_id": {Static: "s1"}}
			c, err := store.UpdateRoutes(ctx, "g1", executor.RouteUpdate{MetricTags: tags,
				Routes: []executor.Route{{Hostnames: []string{"new.example.com"}, Port: 8080}}})
			Expect(err).NotTo(HaveOccurred())
			Expect(c.Routes).To(Equal([]executor.Route{{Hostnames: []string{"new.example.com"}, Port: 8080}}))
			Expect(seen).To(Equal([]string{"app.example.com", "new.example.com"}))
			_, inst := routes.RoutableArgsForCall(1)
			Expect(inst.Request.MetricTags).To(Equal(tags))
			Expect(get("g1").Routes).To(Equal(c.Routes))

			tags2 := map[string]executor.MetricTagValue{"source_id": {Static: "s2"}}
			c, err = store.UpdateRoutes(ctx, "g1", executor.RouteUpdate{KeepRoutes: true, MetricTags: tags2})
			Expect(err).NotTo(HaveOccurred())
			Expect(c.Routes).To(Equal([]executor.Route{{Hostnames: []string{"new.example.com"}, Port: 8080}}))
			Expect(seen).To(Equal([]string{"app.example.com", "new.example.com", "new.example.com"}))
			_, inst = routes.RoutableArgsForCall(2)
			Expect(inst.Request.MetricTags).To(Equal(tags2))

			_, err = store.UpdateRoutes(ctx, "g1", executor.RouteUpdate{})
			Expect(err).NotTo(HaveOccurred())
			Expect(routes.UnroutableCallCount()).To(Equal(1))
			Expect(routes.RoutableCallCount()).To(Equal(3))
			Expect(get("g1").Routes).To(BeEmpty())
			Expect(get("g1").State).To(Equal(executor.StateRunning))
		})

		It("refuses an instance that does not run, and a port's protocol change, changing nothing", func() {
			failures, err := store.Allocate(ctx, []executor.AllocationRequest{{GUID: "r1", Resources: executor.Resources{MemoryMB: 1}}})
			Expect(err).NotTo(HaveOccurred())
			Expect(failures).To(BeEmpty())
			_, err = store.UpdateRoutes(ctx, "r1", executor.RouteUpdate{})
			Expect(errors.Is(err, executor.ErrInvalidTransition)).To(BeTrue())
			_, err = store.UpdateRoutes(ctx, "nope", executor.RouteUpdate{})
			Expect(errors.Is(err, executor.ErrContainerNotFound)).To(BeTrue())

			runToRunning("g1")
			_, err = store.UpdateRoutes(ctx, "g1", executor.RouteUpdate{
				Routes: []executor.Route{{Hostnames: []string{"h2.example.com"}, Port: 8080, Protocol: "http2"}}})
			Expect(errors.Is(err, executor.ErrInvalidRequest)).To(BeTrue())
			Expect(err).To(MatchError(ContainSubstring("protocol cannot change")))
			Expect(get("g1").Routes[0].Hostnames).To(Equal([]string{"app.example.com"}))
			Expect(routes.RoutableCallCount()).To(Equal(1))
		})
	})

	Describe("ReadFile", func() {
		It("checks the path and the container before asking the runtime", func() {
			_, err := store.ReadFile(ctx, "g1", "../etc/passwd", 10)
			Expect(errors.Is(err, executor.ErrInvalidRequest)).To(BeTrue())
			_, err = store.ReadFile(ctx, "nope", "/tmp/r", 10)
			Expect(errors.Is(err, executor.ErrContainerNotFound)).To(BeTrue())
			failures, err := store.Allocate(ctx, []executor.AllocationRequest{{GUID: "r1", Resources: executor.Resources{MemoryMB: 1}}})
			Expect(err).NotTo(HaveOccurred())
			Expect(failures).To(BeEmpty())
			_, err = store.ReadFile(ctx, "r1", "/tmp/r", 10)
			Expect(errors.Is(err, executor.ErrInvalidTransition)).To(BeTrue())
			runToRunning("g1")
			_, err = store.ReadFile(ctx, "g1", "/tmp/r", 10) // the fake runtime reads no files
			Expect(errors.Is(err, executor.ErrUnavailable)).To(BeTrue())
		})
	})

	Describe("shutdown", func() {
		It("stops supervising and leaves running containers alone", func() {
			runToRunning("g1")
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive(BeNil()))
			Expect(runner.SignalCallCount()).To(BeZero())
			Expect(runtime.DeleteCallCount()).To(BeZero())
			Expect(get("g1").State).To(Equal(executor.StateRunning))
		})
	})
})
