package cell_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	"go.uber.org/goleak"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/fakes"
	"github.com/cellagent/cellagent/rep/api"
	"github.com/cellagent/cellagent/rep/bbs"
	"github.com/cellagent/cellagent/rep/cell"
	"github.com/cellagent/cellagent/rep/cell/cellfakes"
	"github.com/cellagent/cellagent/rep/lrp"
	"github.com/cellagent/cellagent/rep/models"
)

// store is the container store the fake client serves: a map of
// containers and an event channel the test feeds.
type store struct {
	mu     sync.Mutex
	ctrs   map[string]executor.Container
	events chan executor.Event
}

func newStore(client *fakes.FakeClient) *store {
	s := &store{ctrs: map[string]executor.Container{}, events: make(chan executor.Event, 16)}
	client.EventsReturns(s.events, nil)
	client.AllocateCalls(func(_ context.Context, reqs []executor.AllocationRequest) ([]executor.AllocationFailure, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, r := range reqs {
			s.ctrs[r.GUID] = executor.Container{GUID: r.GUID, State: executor.StateReserved, Tags: r.Tags, Resources: r.Resources}
		}
		return nil, nil
	})
	client.GetCalls(func(_ context.Context, guid string) (executor.Container, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		c, ok := s.ctrs[guid]
		if !ok {
			return c, executor.NewError(executor.ErrContainerNotFound, "container %s not found", guid)
		}
		return c, nil
	})
	client.ListCalls(func(context.Context) ([]executor.Container, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		var out []executor.Container
		for _, c := range s.ctrs {
			out = append(out, c)
		}
		return out, nil
	})
	client.DeleteCalls(func(_ context.Context, guid string) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.ctrs, guid)
		return nil
	})
	return s
}

// set stores c and publishes its state change.
func (s *store) set(c executor.Container) {
	s.mu.Lock()
	s.ctrs[c.GUID] = c
	s.mu.Unlock()
	s.events <- executor.Event{Type: executor.EventContainerState, GUID: c.GUID, Container: &c}
}

func (s *store) has(guid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ctrs[guid]
	return ok
}

func diegoContainer(guid string, state executor.State) executor.Container {
	return executor.Container{GUID: guid, State: state, Routable: state == executor.StateRunning, ExternalIP: "10.0.0.5", InternalIP: "10.255.0.2",
		Ports: []executor.PortMapping{{ContainerPort: 8080, HostPort: 40001, ContainerTLSProxyPort: 61001, HostTLSProxyPort: 40002}},
		Tags: map[string]string{lrp.TagProcessGUID: "pg-1", lrp.TagIndex: "1", lrp.TagDomain: "d",
			lrp.TagInstanceGUID: guid, "diego.metric-tag.source_id": "pg-1"}}
}

func supported() *models.DesiredLRP {
	return &models.DesiredLRP{ProcessGuid: "pg-1", Domain: "d", RootFs: "preloaded:cflinuxfs4", MemoryMb: 64, DiskMb: 64,
		Ports: []uint32{8080}, Action: &models.Action{RunAction: &models.RunAction{Path: "/app/server"}},
		MetricTags: map[string]*models.MetricTagValue{"source_id": {Static: "pg-1"}}}
}

var _ = Describe("Cell", func() {
	var (
		client  *fakes.FakeClient
		fakeBBS *cellfakes.FakeBBS
		st      *store
		clk     *fakeclock.FakeClock
		c       *cell.Cell
		proc    ifrit.Process
		routes  *cellfakes.FakeRouteUpdater
		files   *cellfakes.FakeFileReader
		changes chan *models.DesiredLRPChangedEvent
		drop    chan struct{} // ends the current event stream
	)

	BeforeEach(func() {
		client, fakeBBS = &fakes.FakeClient{}, &cellfakes.FakeBBS{}
		st = newStore(client)
		clk = fakeclock.NewFakeClock(time.Now())
		fakeBBS.DesiredLRPReturns(supported(), nil)
		routes, files = &cellfakes.FakeRouteUpdater{}, &cellfakes.FakeFileReader{}
		changes, drop = make(chan *models.DesiredLRPChangedEvent), make(chan struct{})
		fakeBBS.DesiredLRPChangesCalls(func(ctx context.Context, _ string, connected func(), changed func(*models.DesiredLRPChangedEvent)) error {
			connected()
			for {
				select {
				case ev := <-changes:
					changed(ev)
				case <-drop:
					return errors.New("stream lost")
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		})
		c = cell.New(lagertest.NewTestLogger("cell"), cell.Config{CellID: "cell-1", Zone: "z1", EmitRoutes: true, Routes: routes, Files: files,
			Stacks: map[string]string{"cflinuxfs4": "busybox"}, ReconcileInterval: time.Minute}, client, fakeBBS, clk)
		proc = ifrit.Invoke(c)
	})

	AfterEach(func() {
		proc.Signal(os.Interrupt)
		Eventually(proc.Wait()).Should(Receive(BeNil()))
		goleak.VerifyNone(GinkgoT(), goleak.IgnoreCurrent())
	})

	work := func() api.Work {
		return api.Work{LRPs: []api.LRP{{ProcessGUID: "pg-1", Index: 1, Domain: "d",
			PlacementConstraint: api.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"}, Resource: api.Resource{MemoryMB: 64, DiskMB: 64}}}}
	}

	Describe("Perform", func() {
		It("reserves, claims and runs an LRP it can run", func() {
			failed, err := c.Perform(context.Background(), work())
			Expect(err).NotTo(HaveOccurred())
			Expect(failed.LRPs).To(BeEmpty())
			Expect(client.AllocateCallCount()).To(Equal(1))
			_, reqs := client.AllocateArgsForCall(0)
			guid := reqs[0].GUID
			Expect(guid).To(HaveLen(28))
			Expect(reqs[0].Resources).To(Equal(executor.Resources{MemoryMB: 64, DiskMB: 64}))
			Expect(reqs[0].Tags).To(HaveKeyWithValue(lrp.TagProcessGUID, "pg-1"))
			Expect(reqs[0].Tags).To(HaveKeyWithValue(lrp.TagIndex, "1"))
			Expect(reqs[0].Tags).To(HaveKeyWithValue("diego.metric-tag.source_id", "pg-1"))

			Eventually(client.RunCallCount).Should(Equal(1))
			Expect(fakeBBS.ClaimCallCount()).To(Equal(1))
			_, key, inst := fakeBBS.ClaimArgsForCall(0)
			Expect(key).To(HaveField("ProcessGuid", "pg-1"))
			Expect(key.GetIndex()).To(BeEquivalentTo(1))
			Expect(inst.GetInstanceGuid()).To(Equal(guid))
			Expect(inst.GetCellId()).To(Equal("cell-1"))
			_, runGUID, req := client.RunArgsForCall(0)
			Expect(runGUID).To(Equal(guid))
			Expect(req.Resources).To(BeNil())
			Expect(req.Image).To(Equal("preloaded:busybox"))
		})

		It("runs a docker image LRP with the image's reference for the runtime to pull", func() {
			d := supported()
			d.RootFs = "docker://127.0.0.1:5000/app#v1"
			d.Action.RunAction.User = "vcap"
			fakeBBS.DesiredLRPReturns(d, nil)
			w := work()
			w.LRPs[0].RootFs = d.RootFs
			failed, err := c.Perform(context.Background(), w)
			Expect(err).NotTo(HaveOccurred())
			Expect(failed.LRPs).To(BeEmpty())
			Eventually(client.RunCallCount).Should(Equal(1))
			_, _, req := client.RunArgsForCall(0)
			Expect(req.Image).To(Equal(executor.DockerImagePrefix + "127.0.0.1:5000/app:v1"))
			Expect(req.Process.User).To(Equal("vcap"))
		})

		It("refuses an LRP it cannot run fully: nothing reserved, the reason recorded in BBS", func() {
			d := supported()
			d.Privileged = true
			fakeBBS.DesiredLRPReturns(d, nil)
			failed, err := c.Perform(context.Background(), work())
			Expect(err).NotTo(HaveOccurred())
			Expect(failed.LRPs).To(BeEmpty())
			Eventually(fakeBBS.FailCallCount).Should(Equal(1))
			_, key, reason := fakeBBS.FailArgsForCall(0)
			Expect(key.GetProcessGuid()).To(Equal("pg-1"))
			Expect(reason).To(ContainSubstring("privileged"))
			Expect(client.AllocateCallCount()).To(BeZero())
			Expect(fakeBBS.ClaimCallCount()).To(BeZero())
		})

		It("answers the LRPs that do not fit as failed work", func() {
			client.AllocateReturns([]executor.AllocationFailure{{Error: executor.ErrInsufficientResources}}, nil)
			client.AllocateStub = nil
			failed, err := c.Perform(context.Background(), work())
			Expect(err).NotTo(HaveOccurred())
			Expect(failed.LRPs).To(Equal(work().LRPs))
			Consistently(fakeBBS.ClaimCallCount).Should(BeZero())
		})

		It("reads the desired LRP once for several instances of one process", func() {
			w := work()
			w.LRPs = append(w.LRPs, w.LRPs[0])
			w.LRPs[1].Index = 0
			failed, err := c.Perform(context.Background(), w)
			Expect(err).NotTo(HaveOccurred())
			Expect(failed.LRPs).To(BeEmpty())
			Expect(fakeBBS.DesiredLRPCallCount()).To(Equal(1))
			Eventually(client.RunCallCount).Should(Equal(2))
		})

		It("does not report a crash for an instance stopped between claim and run", func() {
			claimed := make(chan struct{})
			release := make(chan struct{})
			fakeBBS.ClaimCalls(func(context.Context, *models.ActualLRPKey, *models.ActualLRPInstanceKey) error {
				close(claimed)
				<-release
				return nil
			})
			client.RunReturns(executor.NewError(executor.ErrContainerNotFound, "gone"))
			_, err := c.Perform(context.Background(), work())
			Expect(err).NotTo(HaveOccurred())
			Eventually(claimed).Should(BeClosed())
			_, reqs := client.AllocateArgsForCall(0)
			Expect(c.StopLRP(context.Background(), "pg-1", reqs[0].GUID)).To(Succeed())
			Eventually(fakeBBS.RemoveCallCount).Should(Equal(1))
			close(release)
			Eventually(client.RunCallCount).Should(Equal(1))
			Consistently(fakeBBS.CrashCallCount).Should(BeZero())
		})

		It("drops the reservation when the claim fails", func() {
			fakeBBS.ClaimReturns(&bbs.Error{Type: models.Error_ActualLRPCannotBeClaimed})
			_, err := c.Perform(context.Background(), work())
			Expect(err).NotTo(HaveOccurred())
			Eventually(client.DeleteCallCount).Should(Equal(1))
			Expect(client.RunCallCount()).To(BeZero())
		})
	})

	Describe("reporting", func() {
		It("starts the actual LRP once with the container's net info", func() {
			st.set(diegoContainer("ig-1", executor.StateRunning))
			Eventually(fakeBBS.StartCallCount).Should(Equal(1))
			_, s := fakeBBS.StartArgsForCall(0)
			Expect(s.Key.GetProcessGuid()).To(Equal("pg-1"))
			Expect(s.Instance.GetInstanceGuid()).To(Equal("ig-1"))
			Expect(s.Net.GetAddress()).To(Equal("10.0.0.5"))
			Expect(s.Net.GetInstanceAddress()).To(Equal("10.255.0.2"))
			Expect(s.Net.GetPreferredAddress()).To(Equal(models.ActualLRPNetInfo_HOST))
			Expect(s.Net.GetPorts()).To(HaveLen(1))
			Expect(s.Net.GetPorts()[0].GetHostTlsProxyPort()).To(BeEquivalentTo(40002))
			Expect(s.MetricTags).To(Equal(map[string]string{"source_id": "pg-1"}))
			Expect(s.AvailabilityZone).To(Equal("z1"))

			st.set(diegoContainer("ig-1", executor.StateRunning)) // replayed event
			Consistently(fakeBBS.StartCallCount).Should(Equal(1))
		})

		It("reports a container that exits on its own as crashed and deletes it", func() {
			ctr := diegoContainer("ig-1", executor.StateCompleted)
			ctr.RunResult = executor.RunResult{Failed: true, FailureReason: "app exited with status 3"}
			st.set(ctr)
			Eventually(fakeBBS.CrashCallCount).Should(Equal(1))
			_, _, inst, reason := fakeBBS.CrashArgsForCall(0)
			Expect(inst.GetInstanceGuid()).To(Equal("ig-1"))
			Expect(reason).To(Equal("app exited with status 3"))
			Eventually(func() bool { return st.has("ig-1") }).Should(BeFalse())
		})

		It("starts the actual LRP only once the instance is routable", func() {
			ctr := diegoContainer("ig-1", executor.StateRunning)
			ctr.Routable = false
			st.set(ctr)
			Consistently(fakeBBS.StartCallCount).Should(BeZero())
			ctr.Routable = true
			st.set(ctr)
			Eventually(fakeBBS.StartCallCount).Should(Equal(1))
		})

		It("ignores containers that are not Diego's", func() {
			st.set(executor.Container{GUID: "v1-ctr", State: executor.StateRunning})
			Consistently(fakeBBS.StartCallCount).Should(BeZero())
		})
	})

	Describe("LRP updates", func() {
		cfRoutes := func(json string) *models.DesiredLRP {
			d := supported()
			d.Routes = &models.ProtoRoutes{Routes: map[string][]byte{"cf-router": []byte(json)}}
			return d
		}

		It("gives running instances of a changed desired LRP its new routes, and leaves other processes alone", func() {
			st.set(diegoContainer("ig-1", executor.StateRunning))
			Eventually(fakeBBS.StartCallCount).Should(Equal(1))
			changes <- &models.DesiredLRPChangedEvent{After: cfRoutes(`[{"hostnames":["new.example.com"],"port":8080}]`)}
			Eventually(routes.UpdateRoutesCallCount).Should(Equal(1))
			_, guid, u := routes.UpdateRoutesArgsForCall(0)
			Expect(guid).To(Equal("ig-1"))
			Expect(u.Routes).To(Equal([]executor.Route{{Hostnames: []string{"new.example.com"}, Port: 8080}}))

			other := cfRoutes(`[{"hostnames":["other.example.com"],"port":8080}]`)
			other.ProcessGuid = "pg-2"
			changes <- &models.DesiredLRPChangedEvent{After: other}
			Consistently(routes.UpdateRoutesCallCount).Should(Equal(1))
		})

		It("reads the desired routes of its running instances when the event stream (re)connects", func() {
			Eventually(client.ListCallCount).Should(Equal(2)) // syncAll and the first stream's resync found nothing
			drop <- struct{}{}                                // the first stream breaks
			fakeBBS.DesiredLRPReturns(cfRoutes(`[{"hostnames":["missed.example.com"],"port":8080}]`), nil)
			st.mu.Lock()
			st.ctrs["ig-1"] = diegoContainer("ig-1", executor.StateRunning)
			st.mu.Unlock()
			Consistently(routes.UpdateRoutesCallCount).Should(BeZero())
			Eventually(clk.WatcherCount).Should(Equal(2)) // the reconcile ticker and the retry wait
			clk.Increment(time.Second)
			Eventually(fakeBBS.DesiredLRPChangesCallCount).Should(Equal(2))
			Eventually(routes.UpdateRoutesCallCount).Should(Equal(1))
			_, _, u := routes.UpdateRoutesArgsForCall(0)
			Expect(u.Routes[0].Hostnames).To(Equal([]string{"missed.example.com"}))
		})

		It("applies BBS's PUT metric tags to the instance's registrations, keeping its routes", func() {
			fakeBBS.DesiredLRPReturns(cfRoutes(`[{"hostnames":["a.example.com"],"port":8080}]`), nil) // no change to resync
			ctr := diegoContainer("ig-1", executor.StateRunning)
			ctr.Routes = []executor.Route{{Hostnames: []string{"a.example.com"}, Port: 8080}}
			st.set(ctr)
			Eventually(fakeBBS.StartCallCount).Should(Equal(1))
			Expect(c.UpdateLRP(context.Background(), api.LRPUpdate{ProcessGUID: "pg-1", InstanceGUID: "ig-1",
				MetricTags: map[string]string{"source_id": "s2", "empty": ""}})).To(Succeed())
			Expect(routes.UpdateRoutesCallCount()).To(Equal(1))
			_, _, u := routes.UpdateRoutesArgsForCall(0)
			Expect(u.KeepRoutes).To(BeTrue())
			Expect(u.Routes).To(BeNil())
			Expect(u.MetricTags).To(Equal(map[string]executor.MetricTagValue{"source_id": {Static: "s2"}}))

			Expect(c.UpdateLRP(context.Background(), api.LRPUpdate{ProcessGUID: "pg-2", InstanceGUID: "ig-1"})).To(MatchError(api.ErrNotFound))
			Expect(c.UpdateLRP(context.Background(), api.LRPUpdate{ProcessGUID: "pg-1", InstanceGUID: "nope"})).To(MatchError(api.ErrNotFound))
		})
	})

	Describe("evacuation", func() {
		evacuate := func() {
			st.events <- executor.Event{Type: executor.EventCellEvacuating, Message: "cell is evacuating"}
		}

		It("hands a running instance over with EvacuateRunning until BBS lets it go, then deletes it; no remove, no crash", func() {
			st.set(diegoContainer("ig-1", executor.StateRunning))
			Eventually(fakeBBS.StartCallCount).Should(Equal(1))
			fakeBBS.EvacuateRunningReturnsOnCall(0, true, nil)
			fakeBBS.EvacuateRunningReturnsOnCall(1, false, nil)
			evacuate()
			Eventually(fakeBBS.EvacuateRunningCallCount).Should(Equal(1))
			_, s := fakeBBS.EvacuateRunningArgsForCall(0)
			Expect(s.Instance.GetInstanceGuid()).To(Equal("ig-1"))
			Expect(s.Net.GetPorts()[0].GetHostPort()).To(BeEquivalentTo(40001))
			Consistently(func() bool { return st.has("ig-1") }).Should(BeTrue()) // kept while the replacement starts

			Eventually(clk.WatcherCount).Should(Equal(2)) // the reconcile and evacuation tickers
			clk.Increment(5 * time.Second)
			Eventually(fakeBBS.EvacuateRunningCallCount).Should(Equal(2))
			Eventually(func() bool { return st.has("ig-1") }).Should(BeFalse())
			Expect(fakeBBS.RemoveCallCount()).To(BeZero())
			Expect(fakeBBS.CrashCallCount()).To(BeZero())
			Expect(fakeBBS.StartCallCount()).To(Equal(1))
		})

		It("gives back a starting instance and reports a crashed one through the evacuation endpoints, deleting both", func() {
			crashed := diegoContainer("ig-3", executor.StateCompleted)
			crashed.RunResult = executor.RunResult{Failed: true, FailureReason: "app exited with status 3"}
			Eventually(client.ListCallCount).Should(Equal(2)) // the start's syncAll and the stream's resync are done
			st.mu.Lock()
			st.ctrs["ig-2"] = diegoContainer("ig-2", executor.StateCreated)
			st.ctrs["ig-3"] = crashed
			st.ctrs["reserved"] = diegoContainer("reserved", executor.StateReserved)
			st.mu.Unlock()
			evacuate()
			Eventually(fakeBBS.EvacuateClaimedCallCount).Should(Equal(1))
			_, _, inst := fakeBBS.EvacuateClaimedArgsForCall(0)
			Expect(inst.GetInstanceGuid()).To(Equal("ig-2"))
			Eventually(fakeBBS.EvacuateCrashedCallCount).Should(Equal(1))
			_, _, inst, reason := fakeBBS.EvacuateCrashedArgsForCall(0)
			Expect(inst.GetInstanceGuid()).To(Equal("ig-3"))
			Expect(reason).To(Equal("app exited with status 3"))
			Eventually(func() bool { return st.has("ig-2") || st.has("ig-3") }).Should(BeFalse())
			Expect(st.has("reserved")).To(BeTrue()) // not claimed yet: its run comes back as an event
			Expect(fakeBBS.CrashCallCount()).To(BeZero())
		})

		It("keeps an instance BBS answers with an error for, and asks again at the next poll", func() {
			st.set(diegoContainer("ig-1", executor.StateRunning))
			Eventually(fakeBBS.StartCallCount).Should(Equal(1))
			fakeBBS.EvacuateRunningReturnsOnCall(0, false, errors.New("bbs unreachable"))
			fakeBBS.EvacuateRunningReturnsOnCall(1, false, nil)
			evacuate()
			Eventually(fakeBBS.EvacuateRunningCallCount).Should(Equal(1))
			Consistently(func() bool { return st.has("ig-1") }).Should(BeTrue())
			Eventually(clk.WatcherCount).Should(Equal(2))
			clk.Increment(5 * time.Second)
			Eventually(func() bool { return st.has("ig-1") }).Should(BeFalse())
		})
	})

	Describe("StopLRP", func() {
		It("deletes the container, then removes the actual LRP; no crash is reported", func() {
			st.set(diegoContainer("ig-1", executor.StateRunning))
			Eventually(fakeBBS.StartCallCount).Should(Equal(1))
			client.DeleteCalls(func(_ context.Context, guid string) error {
				ctr := diegoContainer(guid, executor.StateCompleted)
				ctr.RunResult.Stopped = true
				st.set(ctr) // the store completes it while deleting
				st.mu.Lock()
				delete(st.ctrs, guid)
				st.mu.Unlock()
				return nil
			})
			Expect(c.StopLRP(context.Background(), "pg-1", "ig-1")).To(Succeed())
			Eventually(fakeBBS.RemoveCallCount).Should(Equal(1))
			_, key, inst := fakeBBS.RemoveArgsForCall(0)
			Expect(key.GetProcessGuid()).To(Equal("pg-1"))
			Expect(inst.GetInstanceGuid()).To(Equal("ig-1"))
			Consistently(fakeBBS.CrashCallCount).Should(BeZero())
			Expect(fakeBBS.RemoveCallCount()).To(Equal(1))
		})

		It("tries a delete the store could not finish again, then removes the actual LRP", func() {
			st.set(diegoContainer("ig-1", executor.StateRunning))
			Eventually(fakeBBS.StartCallCount).Should(Equal(1))
			client.DeleteReturnsOnCall(0, errors.New("delete ig-1 (retry the delete): network: tear down"))
			client.DeleteReturnsOnCall(1, errors.New("delete ig-1 (retry the delete): network: tear down"))
			client.DeleteReturnsOnCall(2, nil)
			Expect(c.StopLRP(context.Background(), "pg-1", "ig-1")).To(Succeed())
			Eventually(client.DeleteCallCount).Should(Equal(1))
			Consistently(fakeBBS.RemoveCallCount).Should(BeZero())
			Eventually(clk.WatcherCount).Should(BeNumerically(">=", 2)) // the reconcile ticker and the retry wait
			clk.Increment(time.Second)
			Eventually(client.DeleteCallCount).Should(Equal(2))
			Eventually(clk.WatcherCount).Should(BeNumerically(">=", 2))
			clk.Increment(2 * time.Second)
			Eventually(client.DeleteCallCount).Should(Equal(3))
			Eventually(fakeBBS.RemoveCallCount).Should(Equal(1))
		})

		It("answers not found for an unknown instance or another process's", func() {
			Expect(c.StopLRP(context.Background(), "pg-1", "nope")).To(MatchError(api.ErrNotFound))
			st.set(diegoContainer("ig-1", executor.StateRunning))
			Expect(c.StopLRP(context.Background(), "pg-2", "ig-1")).To(MatchError(api.ErrNotFound))
		})
	})

	Describe("tasks", func() {
		taskWork := func() api.Work {
			return api.Work{Tasks: []api.Task{{TaskGuid: "task-1", Domain: "d",
				PlacementConstraint: api.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"}, Resource: api.Resource{MemoryMB: 32}}}}
		}
		taskDef := func() *models.Task {
			return &models.Task{TaskGuid: "task-1", TaskDefinition: &models.TaskDefinition{RootFs: "preloaded:cflinuxfs4",
				MemoryMb: 32, Action: &models.Action{RunAction: &models.RunAction{Path: "/bin/true"}}}}
		}
		taskContainer := func(exit int) executor.Container {
			return executor.Container{GUID: "task-1", State: executor.StateCompleted,
				Tags:      map[string]string{lrp.TagTaskGUID: "task-1", lrp.TagDomain: "d"},
				RunResult: executor.RunResult{Failed: true, FailureReason: fmt.Sprintf("app exited with status %d", exit), ExitStatus: &exit}}
		}

		BeforeEach(func() {
			fakeBBS.TaskReturns(taskDef(), nil)
			fakeBBS.StartTaskReturns(true, nil)
		})

		It("reserves the task's container, starts the task in BBS, then runs it", func() {
			failed, err := c.Perform(context.Background(), taskWork())
			Expect(err).NotTo(HaveOccurred())
			Expect(failed.Tasks).To(BeEmpty())
			_, reqs := client.AllocateArgsForCall(0)
			Expect(reqs[0].GUID).To(Equal("task-1"))
			Expect(reqs[0].Tags).To(HaveKeyWithValue(lrp.TagTaskGUID, "task-1"))
			Eventually(client.RunCallCount).Should(Equal(1))
			_, guid, cell := fakeBBS.StartTaskArgsForCall(0)
			Expect([]string{guid, cell}).To(Equal([]string{"task-1", "cell-1"}))
		})

		It("drops the reservation when BBS says the task must not start", func() {
			fakeBBS.StartTaskReturns(false, nil)
			_, err := c.Perform(context.Background(), taskWork())
			Expect(err).NotTo(HaveOccurred())
			Eventually(client.DeleteCallCount).Should(Equal(1))
			Expect(client.RunCallCount()).To(BeZero())
		})

		DescribeTable("completes a task by its exit status and deletes its container",
			func(exit int, failed bool, reason string) {
				st.set(taskContainer(exit))
				Eventually(fakeBBS.CompleteTaskCallCount).Should(Equal(1))
				_, guid, cellID, gotFailed, gotReason, result := fakeBBS.CompleteTaskArgsForCall(0)
				Expect([]any{guid, cellID, gotFailed, gotReason, result}).To(Equal([]any{"task-1", "cell-1", failed, reason, ""}))
				Eventually(func() bool { return st.has("task-1") }).Should(BeFalse())
			},
			Entry("exit 0 succeeds", 0, false, ""),
			Entry("exit 3 fails with the reason", 3, true, "app exited with status 3"),
		)

		It("reads the result file of a task that ended and completes the task with it", func() {
			files.ReadFileReturns([]byte("42\n"), nil)
			ctr := taskContainer(0)
			ctr.Tags[lrp.TagResultFile] = "/tmp/result"
			st.set(ctr)
			Eventually(fakeBBS.CompleteTaskCallCount).Should(Equal(1))
			_, guid, path, limit := files.ReadFileArgsForCall(0)
			Expect([]any{guid, path, limit}).To(Equal([]any{"task-1", "/tmp/result", int64(50 << 10)}))
			_, _, _, gotFailed, _, result := fakeBBS.CompleteTaskArgsForCall(0)
			Expect(gotFailed).To(BeFalse())
			Expect(result).To(Equal("42\n"))
		})

		It("fails a task that succeeded when its result file cannot be read, as the rep does", func() {
			files.ReadFileReturns(nil, errors.New("/tmp/result: no such file in container task-1"))
			ctr := taskContainer(0)
			ctr.Tags[lrp.TagResultFile] = "/tmp/result"
			st.set(ctr)
			Eventually(fakeBBS.CompleteTaskCallCount).Should(Equal(1))
			_, _, _, gotFailed, reason, result := fakeBBS.CompleteTaskArgsForCall(0)
			Expect(gotFailed).To(BeTrue())
			Expect(reason).To(Equal("failed to fetch result: /tmp/result: no such file in container task-1"))
			Expect(result).To(BeEmpty())
		})

		It("tags the task's container with its result file", func() {
			t := taskDef()
			t.TaskDefinition.ResultFile = "/tmp/result"
			fakeBBS.TaskReturns(t, nil)
			_, err := c.Perform(context.Background(), taskWork())
			Expect(err).NotTo(HaveOccurred())
			_, reqs := client.AllocateArgsForCall(0)
			Expect(reqs[0].Tags).To(HaveKeyWithValue(lrp.TagResultFile, "/tmp/result"))
		})

		It("completes a task it cannot run as failed with the reason, reserving nothing", func() {
			t := taskDef()
			t.TaskDefinition.ResultFile = "tmp/result" // relative
			fakeBBS.TaskReturns(t, nil)
			failed, err := c.Perform(context.Background(), taskWork())
			Expect(err).NotTo(HaveOccurred())
			Expect(failed.Tasks).To(BeEmpty())
			Eventually(fakeBBS.CompleteTaskCallCount).Should(Equal(1))
			_, _, _, gotFailed, reason, _ := fakeBBS.CompleteTaskArgsForCall(0)
			Expect(gotFailed).To(BeTrue())
			Expect(reason).To(ContainSubstring("result_file"))
			Expect(client.AllocateCallCount()).To(BeZero())
		})

		It("cancels by deleting the container without completing the task again", func() {
			running := taskContainer(0)
			running.State, running.RunResult = executor.StateRunning, executor.RunResult{}
			st.set(running)
			client.DeleteCalls(func(_ context.Context, guid string) error {
				ctr := taskContainer(137)
				ctr.RunResult.Stopped = true
				st.set(ctr)
				st.mu.Lock()
				delete(st.ctrs, guid)
				st.mu.Unlock()
				return nil
			})
			Expect(c.CancelTask(context.Background(), "task-1")).To(Succeed())
			Eventually(client.DeleteCallCount).Should(Equal(1))
			Consistently(fakeBBS.CompleteTaskCallCount).Should(BeZero())
			Expect(c.CancelTask(context.Background(), "nope")).To(MatchError(api.ErrNotFound))
		})
	})

	Describe("reconcile", func() {
		It("removes records whose container is gone and deletes containers BBS does not place here", func() {
			st.mu.Lock()
			st.ctrs["orphan"] = diegoContainer("orphan", executor.StateRunning)
			st.ctrs["kept"] = diegoContainer("kept", executor.StateRunning)
			st.mu.Unlock()
			lrpOn := func(guid, state string) *models.ActualLRP {
				return &models.ActualLRP{ActualLrpKey: &models.ActualLRPKey{ProcessGuid: "pg-1"}, State: state,
					ActualLrpInstanceKey: &models.ActualLRPInstanceKey{InstanceGuid: guid, CellId: "cell-1"}}
			}
			st.mu.Lock()
			st.ctrs["evacuating"] = diegoContainer("evacuating", executor.StateRunning)
			st.mu.Unlock()
			evac := lrpOn("evacuating", "RUNNING")
			evac.Presence = models.ActualLRP_EVACUATING
			fakeBBS.ActualLRPsReturns([]*models.ActualLRP{lrpOn("kept", "RUNNING"), lrpOn("gone", "RUNNING"), evac}, nil)
			clk.WaitForWatcherAndIncrement(time.Minute)
			Eventually(fakeBBS.RemoveCallCount).Should(Equal(1))
			_, _, inst := fakeBBS.RemoveArgsForCall(0)
			Expect(inst.GetInstanceGuid()).To(Equal("gone"))
			Eventually(func() bool { return st.has("orphan") }).Should(BeFalse())
			Expect(st.has("kept")).To(BeTrue())
			Expect(st.has("evacuating")).To(BeTrue()) // BBS holds it as EVACUATING: still this cell's
		})
	})

	Describe("State", func() {
		It("lists the Diego instances, the preloaded stacks and any docker image", func() {
			client.StateReturns(executor.CellState{Total: executor.ResourceTotals{MemoryMB: 1024, DiskMB: 2048, Containers: 10},
				Available: executor.ResourceTotals{MemoryMB: 960, DiskMB: 1984, Containers: 9}, ProxyMemoryOverheadMB: 32}, nil)
			st.mu.Lock()
			st.ctrs["ig-1"] = diegoContainer("ig-1", executor.StateCreated)
			st.ctrs["v1"] = executor.Container{GUID: "v1", State: executor.StateRunning}
			st.mu.Unlock()
			s, err := c.State(context.Background())
			Expect(err).NotTo(HaveOccurred())
			Expect(s.CellID).To(Equal("cell-1"))
			Expect(s.TotalResources).To(Equal(api.Resources{MemoryMB: 1024, DiskMB: 2048, Containers: 10}))
			Expect(s.AvailableResources).To(Equal(api.Resources{MemoryMB: 960, DiskMB: 1984, Containers: 9}))
			Expect(s.ProxyMemoryAllocationMB).To(Equal(32))
			Expect(s.RootFSProviders).To(Equal(api.RootFSProviders{"preloaded": {"cflinuxfs4"}, "docker": nil}))
			Expect(s.LRPs).To(ConsistOf(HaveField("InstanceGUID", "ig-1")))
			Expect(s.LRPs[0].State).To(Equal("CLAIMED"))
			Expect(s.StartingContainerCount).To(Equal(1))
		})
	})

	It("shows operators its instances and tasks by state, and whether BBS answered", func() {
		st.mu.Lock()
		st.ctrs["ig-1"] = diegoContainer("ig-1", executor.StateRunning)
		st.ctrs["ig-2"] = diegoContainer("ig-2", executor.StateCreated)
		st.ctrs["ig-3"] = diegoContainer("ig-3", executor.StateReserved)
		st.ctrs["t-1"] = executor.Container{GUID: "t-1", State: executor.StateRunning, Tags: map[string]string{lrp.TagTaskGUID: "t-1"}}
		st.ctrs["v1"] = executor.Container{GUID: "v1", State: executor.StateRunning}
		st.mu.Unlock()
		d, err := c.DiegoState(context.Background())
		Expect(err).NotTo(HaveOccurred())
		Expect(d.LRPs).To(Equal(map[string]int{"RUNNING": 1, "CLAIMED": 1, "RESERVED": 1}))
		Expect(d.Tasks).To(Equal(map[string]int{"Running": 1}))
		Expect(d.PresenceHeld).To(BeFalse()) // no presence wired in this test
		Expect(d.BBSReachable).To(BeFalse()) // the fake is no BBSHealth
		Expect(d.Evacuating).To(BeFalse())
	})

	It("does not fail the BBS error check for unrelated errors", func() {
		Expect(bbs.IsType(errors.New("x"), models.Error_ResourceNotFound)).To(BeFalse())
	})
})
