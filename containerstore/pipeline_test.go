package containerstore_test

import (
	"context"
	"os"
	"reflect"
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

	It("gives each step a copy of what the earlier steps answered, and the container what all of them did", func() {
		rt := &containerstorefakes.FakeContainerRuntime{}
		rt.PrepareReturns(containerstore.User{UID: 2000, GID: 2000}, nil)
		tasks := &containerstorefakes.FakeTaskRunner{}
		tasks.StartReturns(make(chan containerstore.Exit), nil)
		ports := named[containerstore.ProxyPortsResult]("proxy-ports")
		ports.SetupReturns(containerstore.ProxyPortsResult{Ports: map[uint16]uint16{8080: 61001}, AdminPort: 61002, MemoryOverheadMB: 32}, nil)
		network := named[containerstore.NetworkResult]("network")
		network.SetupStub = func(_ context.Context, _ lager.Logger, in containerstore.Instance) (containerstore.NetworkResult, error) {
			in.ProxyPorts[8080] = 1 // a step's input is its own
			return containerstore.NetworkResult{NetNSPath: "/run/netns/g1", InternalIP: "10.255.0.2", ExternalIP: "10.0.0.5",
				Ports: []executor.PortMapping{{ContainerPort: 8080, HostPort: 40000, ContainerTLSProxyPort: 61001, HostTLSProxyPort: 40001}}}, nil
		}
		creds := named[containerstore.CredentialsResult]("credentials")
		creds.SetupReturns(containerstore.CredentialsResult{Mounts: []containerstore.Mount{{Source: "/creds", Destination: "/etc/cf-instance-credentials"}},
			Env: []string{"CF_INSTANCE_CERT=/etc/cf-instance-credentials/instance.crt"}, Info: &executor.CredentialInfo{Serial: "07"}, CertPEM: []byte("cert")}, nil)
		proxy := named[containerstore.ProxyResult]("proxy")
		proxy.SetupReturns(containerstore.ProxyResult{Mounts: []containerstore.Mount{{Source: "/proxy", Destination: "/etc/cf-assets/envoy_config"}}}, nil)
		pipe := containerstore.Pipeline{ProxyPorts: ports, Network: network, Credentials: creds, Proxy: proxy, Routes: &containerstorefakes.FakeRouteHook{}}
		store, err := containerstore.New(lagertest.NewTestLogger("store"), containerstore.Config{
			CellID: "cell-1", DataDir: GinkgoT().TempDir(),
			Capacity:           executor.ResourceTotals{MemoryMB: 1024, DiskMB: 1024, Containers: 4},
			ReservedExpiration: time.Minute, DefaultStartTimeout: time.Minute, DefaultStopGrace: time.Second,
		}, containerstore.Deps{Runtime: rt, Tasks: tasks, Pipeline: pipe, Clock: fakeclock.NewFakeClock(time.Now())})
		Expect(err).NotTo(HaveOccurred())
		process := ifrit.Background(store.Runner())
		Eventually(process.Ready()).Should(BeClosed())
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive())
		})
		_, err = store.AllocateAndRun(context.Background(), "g1", executor.RunRequest{Image: "preloaded:busybox",
			Resources: &executor.Resources{MemoryMB: 64}, Process: executor.Process{Path: "/app"}, Ports: []uint16{8080}})
		Expect(err).NotTo(HaveOccurred())
		Eventually(rt.CreateCallCount).Should(Equal(1))

		Expect(network.SetupArgsForCall(0).ProxyPorts).To(HaveKeyWithValue(uint16(8080), uint16(1)))
		Expect(creds.SetupArgsForCall(0).ProxyPorts).To(Equal(map[uint16]uint16{8080: 61001}), "the network's write stayed in its copy")
		Expect(creds.SetupArgsForCall(0).InternalIP).To(Equal("10.255.0.2"))
		in := proxy.SetupArgsForCall(0)
		Expect(in.CertPEM).To(Equal([]byte("cert")))
		Expect(in.Ports).To(HaveLen(1))
		Expect(in.ProxyAdminPort).To(BeEquivalentTo(61002))
		_, _, spec := rt.CreateArgsForCall(0)
		Expect(spec.NetNSPath).To(Equal("/run/netns/g1"))
		Expect(spec.Mounts).To(Equal([]containerstore.Mount{{Source: "/creds", Destination: "/etc/cf-instance-credentials"},
			{Source: "/proxy", Destination: "/etc/cf-assets/envoy_config"}}))
		Expect(spec.Env).To(ContainElement("CF_INSTANCE_CERT=/etc/cf-instance-credentials/instance.crt"))
		Expect(spec.MemoryLimitBytes).To(BeEquivalentTo((64 + 32) << 20))
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
