package containerstore_test

import (
	"context"
	"os"
	"sync"
	"syscall"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/containerstore/containerstorefakes"
	"github.com/cellagent/cellagent/executor"
)

// Issue 13 item 6: disk_mb was bookkeeping only.
var _ = Describe("disk_mb enforcement", func() {
	It("fails an instance whose writable layer passes its disk_mb and leaves its neighbour running", func() {
		ctx := context.Background()
		clk := fakeclock.NewFakeClock(time.Now())
		rt := &containerstorefakes.FakeContainerRuntime{}
		rt.PrepareReturns(containerstore.User{UID: 2000, GID: 2000}, nil)
		var mu sync.Mutex
		exits := map[string]chan containerstore.Exit{}
		tasks := &containerstorefakes.FakeTaskRunner{}
		tasks.StartStub = func(_ context.Context, _ lager.Logger, guid string) (<-chan containerstore.Exit, error) {
			mu.Lock()
			defer mu.Unlock()
			exits[guid] = make(chan containerstore.Exit, 1)
			return exits[guid], nil
		}
		tasks.SignalStub = func(_ context.Context, guid string, sig syscall.Signal) error {
			mu.Lock()
			defer mu.Unlock()
			select {
			case exits[guid] <- containerstore.Exit{Status: 143}:
			default:
			}
			return nil
		}
		usage := map[string]int64{"big": 65<<20 + 1, "small": 1 << 20}
		store, err := containerstore.New(lagertest.NewTestLogger("store"), containerstore.Config{
			CellID: "cell-1", Zone: "z1", DataDir: GinkgoT().TempDir(),
			Capacity:           executor.ResourceTotals{MemoryMB: 1024, DiskMB: 1024, Containers: 4},
			ReservedExpiration: time.Minute, DefaultStartTimeout: time.Minute, DefaultStopGrace: time.Second,
			DefaultUser: "vcap", HealthInterval: time.Second,
		}, containerstore.Deps{Runtime: rt, Tasks: tasks, Pipeline: containerstore.Pipeline{Routes: &containerstorefakes.FakeRouteHook{}}, Clock: clk,
			DiskUsage: func(_ context.Context, guid string) (int64, error) { return usage[guid], nil }})
		Expect(err).NotTo(HaveOccurred())
		p := ifrit.Background(store.Runner())
		Eventually(p.Ready()).Should(BeClosed())
		DeferCleanup(func() { p.Signal(os.Interrupt); Eventually(p.Wait()).Should(Receive()) })

		state := func(guid string) func() executor.State {
			return func() executor.State { c, _ := store.Get(ctx, guid); return c.State }
		}
		for _, guid := range []string{"big", "small"} {
			_, err := store.AllocateAndRun(ctx, guid, executor.RunRequest{Image: "preloaded:busybox",
				Resources: &executor.Resources{MemoryMB: 64, DiskMB: 64}, Process: executor.Process{Path: "/app"}})
			Expect(err).NotTo(HaveOccurred())
			Eventually(state(guid)).Should(Equal(executor.StateRunning))
		}
		Eventually(func() executor.State { clk.Increment(time.Second); return state("big")() }).Should(Equal(executor.StateCompleted))
		c, _ := store.Get(ctx, "big")
		Expect(c.RunResult.Failed).To(BeTrue())
		Expect(c.RunResult.FailureReason).To(HavePrefix("disk limit exceeded: 65 MiB written"))
		Expect(c.RunResult.FailureCode).To(Equal(executor.FailureDiskLimit))
		Expect(state("small")()).To(Equal(executor.StateRunning))
	})
})

var _ = Describe("the agent's disk reserve", func() {
	It("refuses new containers and says disk_low in the state when data_dir's free space is under it", func() {
		ctx := context.Background()
		store, err := containerstore.New(lagertest.NewTestLogger("store"), containerstore.Config{
			CellID: "cell-1", Zone: "z1", DataDir: GinkgoT().TempDir(),
			Capacity:           executor.ResourceTotals{MemoryMB: 1024, DiskMB: 1024, Containers: 4},
			ReservedExpiration: time.Minute, DefaultStartTimeout: time.Minute, DefaultStopGrace: time.Second,
			DefaultUser: "vcap", DiskReserveMB: 1 << 40, // more than any disk here
		}, containerstore.Deps{Runtime: &containerstorefakes.FakeContainerRuntime{}, Tasks: &containerstorefakes.FakeTaskRunner{},
			Pipeline: containerstore.Pipeline{Routes: &containerstorefakes.FakeRouteHook{}}, Clock: fakeclock.NewFakeClock(time.Now())})
		Expect(err).NotTo(HaveOccurred())
		p := ifrit.Background(store.Runner())
		Eventually(p.Ready()).Should(BeClosed())
		DeferCleanup(func() { p.Signal(os.Interrupt); Eventually(p.Wait()).Should(Receive()) })

		_, err = store.AllocateAndRun(ctx, "g1", executor.RunRequest{Image: "preloaded:busybox",
			Resources: &executor.Resources{MemoryMB: 64}, Process: executor.Process{Path: "/app"}})
		Expect(err).To(MatchError(executor.ErrInsufficientResources))
		Expect(err).To(MatchError(ContainSubstring("disk low")))
		st, err := store.State(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.DiskLow).To(BeTrue())
		Expect(st.DiskFreeMB).To(BeNumerically(">", 0))
	})
})
