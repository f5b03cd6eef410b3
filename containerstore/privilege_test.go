package containerstore_test

import (
	"context"
	"os"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/containerstore/containerstorefakes"
	"github.com/cellagent/cellagent/executor"
)

// Issue 13 item 1: an image's /etc/passwd (vcap:x:0:0) or a request's
// "user":"0" gave real root on the host.
var _ = Describe("a process user that resolves to root", func() {
	var (
		ctx     = context.Background()
		rt      *containerstorefakes.FakeContainerRuntime
		cfg     containerstore.Config
		store   *containerstore.Store
		request func(user string, privileged bool) executor.RunRequest
	)
	BeforeEach(func() {
		rt = &containerstorefakes.FakeContainerRuntime{}
		rt.PrepareReturns(containerstore.User{UID: 0, GID: 0}, nil) // the image maps the user to root
		cfg = containerstore.Config{CellID: "cell-1", Zone: "z1", DataDir: GinkgoT().TempDir(),
			Capacity:           executor.ResourceTotals{MemoryMB: 1024, DiskMB: 1024, Containers: 4},
			ReservedExpiration: time.Minute, DefaultStartTimeout: time.Minute, DefaultStopGrace: time.Second,
			DefaultUser: "vcap"}
		request = func(user string, privileged bool) executor.RunRequest {
			return executor.RunRequest{Image: "preloaded:busybox", Resources: &executor.Resources{MemoryMB: 64},
				Process: executor.Process{Path: "/bin/sh", User: user}, Privileged: privileged}
		}
	})
	JustBeforeEach(func() {
		var err error
		store, err = containerstore.New(lagertest.NewTestLogger("store"), cfg, containerstore.Deps{
			Runtime: rt, Tasks: &containerstorefakes.FakeTaskRunner{}, Pipeline: containerstore.Pipeline{Routes: &containerstorefakes.FakeRouteHook{}},
			Clock: fakeclock.NewFakeClock(time.Now())})
		Expect(err).NotTo(HaveOccurred())
		p := ifrit.Background(store.Runner())
		Eventually(p.Ready()).Should(BeClosed())
		DeferCleanup(func() { p.Signal(os.Interrupt); Eventually(p.Wait()).Should(Receive()) })
	})

	It("fails the instance without creating a container when the image resolves the user to uid 0", func() {
		_, err := store.AllocateAndRun(ctx, "g1", request("vcap", false))
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() executor.RunResult {
			c, _ := store.Get(ctx, "g1")
			return c.RunResult
		}).Should(HaveField("FailureReason", ContainSubstring("resolves to uid 0 gid 0")))
		Expect(rt.CreateCallCount()).To(BeZero())
	})

	DescribeTable("refuses at request time, reserving nothing",
		func(user string, privileged bool, msg string) {
			_, err := store.AllocateAndRun(ctx, "g1", request(user, privileged))
			Expect(err).To(MatchError(executor.ErrInvalidRequest))
			Expect(err).To(MatchError(ContainSubstring(msg)))
			_, err = store.Get(ctx, "g1")
			Expect(err).To(MatchError(executor.ErrContainerNotFound))
		},
		Entry("user root", "root", false, `process user "root" is root`),
		Entry("user 0", "0", false, `process user "0" is root`),
		Entry("privileged on a cell that does not allow it", "vcap", true, "allow_privileged is false"),
	)

	Context("on a cell with allow_privileged", func() {
		BeforeEach(func() { cfg.AllowPrivileged = true })

		It("still refuses root unless the request asks for privileged", func() {
			_, err := store.AllocateAndRun(ctx, "g1", request("root", false))
			Expect(err).To(MatchError(executor.ErrInvalidRequest))
		})

		It("runs a privileged request as uid 0", func() {
			_, err := store.AllocateAndRun(ctx, "g1", request("root", true))
			Expect(err).NotTo(HaveOccurred())
			Eventually(rt.CreateCallCount).Should(Equal(1))
			_, _, spec := rt.CreateArgsForCall(0)
			Expect(spec.User).To(Equal(containerstore.User{UID: 0, GID: 0}))
		})
	})
})
