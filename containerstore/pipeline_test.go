package containerstore_test

import (
	"context"
	"reflect"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/containerstore/containerstorefakes"
	"github.com/cellagent/cellagent/executor"
)

// hostPortNetwork is a Network step that records the host ports the store
// asks it to check.
type hostPortNetwork struct {
	*containerstorefakes.FakeStep[containerstore.NetworkResult]
	asked []int
	err   error
}

func (n *hostPortNetwork) CheckHostPorts(need int) error {
	n.asked = append(n.asked, need)
	return n.err
}

// named is a fake step of result R named name.
func named[R containerstore.Result](name string) *containerstorefakes.FakeStep[R] {
	s := &containerstorefakes.FakeStep[R]{}
	s.NameReturns(name)
	return s
}

var _ = Describe("Pipeline", func() {
	It("runs its setup steps in field order, leaving out the nil ones", func() {
		p := containerstore.Pipeline{
			Downloads:   named[containerstore.DownloadsResult]("Downloads"),
			ProxyPorts:  named[containerstore.ProxyPortsResult]("ProxyPorts"),
			Network:     named[containerstore.NetworkResult]("Network"),
			Credentials: named[containerstore.CredentialsResult]("Credentials"),
			Proxy:       named[containerstore.ProxyResult]("Proxy"),
			BindMounts:  named[containerstore.BindMountsResult]("BindMounts"),
		}
		stepType := reflect.TypeFor[containerstore.Step]()
		var fields []string
		t := reflect.TypeFor[containerstore.Pipeline]()
		for i := range t.NumField() {
			if t.Field(i).Type.Implements(stepType) {
				fields = append(fields, t.Field(i).Name)
			}
		}
		Expect(fields).To(Equal([]string{"Downloads", "ProxyPorts", "Network", "Credentials", "Proxy", "BindMounts"}))
		names := func() []string {
			var out []string
			for _, h := range p.Steps() {
				out = append(out, h.Name())
			}
			return out
		}
		Expect(names()).To(Equal(fields))
		p.Downloads, p.ProxyPorts, p.Proxy = nil, nil, nil
		Expect(names()).To(Equal([]string{"Network", "Credentials", "BindMounts"}))
	})

	Describe("the host port check", func() {
		var (
			network *hostPortNetwork
			pipe    containerstore.Pipeline
		)
		BeforeEach(func() {
			network = &hostPortNetwork{FakeStep: &containerstorefakes.FakeStep[containerstore.NetworkResult]{}}
			pipe = containerstore.Pipeline{Network: network, Routes: &containerstorefakes.FakeRouteHook{}}
		})
		run := func() error {
			store, err := containerstore.New(lagertest.NewTestLogger("store"), containerstore.Config{
				CellID: "cell-1", DataDir: GinkgoT().TempDir(),
				Capacity:           executor.ResourceTotals{MemoryMB: 1024, DiskMB: 1024, Containers: 4},
				ReservedExpiration: time.Minute, DefaultStartTimeout: time.Minute, DefaultStopGrace: time.Second,
			}, containerstore.Deps{Runtime: &containerstorefakes.FakeContainerRuntime{}, Tasks: &containerstorefakes.FakeTaskRunner{},
				Pipeline: pipe, Clock: fakeclock.NewFakeClock(time.Now())})
			Expect(err).NotTo(HaveOccurred())
			_, err = store.AllocateAndRun(context.Background(), "g1", executor.RunRequest{Image: "preloaded:busybox",
				Resources: &executor.Resources{MemoryMB: 64}, Process: executor.Process{Path: "/app"}, Ports: []uint16{8080, 9090, 7070}})
			return err
		}

		It("asks the network for the app ports", func() {
			network.err = executor.NewError(executor.ErrInsufficientResources, "insufficient host ports")
			Expect(run()).To(MatchError(executor.ErrInsufficientResources))
			Expect(network.asked).To(Equal([]int{3}))
		})

		It("asks for one proxy port more per app port when the pipeline has a proxy", func() {
			network.err = executor.NewError(executor.ErrInsufficientResources, "insufficient host ports")
			pipe.ProxyPorts = &containerstorefakes.FakeStep[containerstore.ProxyPortsResult]{}
			Expect(run()).To(MatchError(executor.ErrInsufficientResources))
			Expect(network.asked).To(Equal([]int{6}))
		})
	})
})
