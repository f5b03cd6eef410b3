package routeemitter_test

import (
	"encoding/json"
	"net"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/ginkgomon_v2"
	"go.uber.org/goleak"

	"github.com/cellagent/cellagent/routeemitter"
	"github.com/cellagent/cellagent/routeemitter/embeddednats"
	"github.com/cellagent/cellagent/routeemitter/routetable"
)

func TestRouteEmitter(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "RouteEmitter Suite")
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(10 * time.Second)
	SetDefaultConsistentlyDuration(200 * time.Millisecond)
})

// leakCheck snapshots the goroutines before a spec and checks after it that
// every goroutine the spec started has ended.
func leakCheck() {
	ignore := goleak.IgnoreCurrent()
	DeferCleanup(func() {
		Eventually(func() error { return goleak.Find(ignore) }).Should(Succeed())
	})
}

// freePort answers a loopback port nobody listens on right now.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// natsServer is an embedded NATS server for one spec, restartable on the
// same port.
type natsServer struct {
	runner  *embeddednats.EmbeddedNATS
	process ifrit.Process
	listen  string
}

func startNATS(listen string) *natsServer {
	runner, err := embeddednats.NewEmbeddedNATS(lagertest.NewTestLogger("nats"), listen, GinkgoT().TempDir())
	Expect(err).NotTo(HaveOccurred())
	s := &natsServer{runner: runner, listen: listen}
	s.start()
	DeferCleanup(s.stop)
	return s
}

func (s *natsServer) start() {
	s.process = ifrit.Invoke(s.runner)
}

func (s *natsServer) stop() {
	if s.process != nil {
		ginkgomon_v2.Interrupt(s.process, 10*time.Second)
		s.process = nil
	}
}

func (s *natsServer) url() string { return s.runner.ClientURL() }

// connect answers a client connection closed after the spec.
func (s *natsServer) connect() *nats.Conn {
	nc, err := nats.Connect(s.url(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(nc.Close)
	return nc
}

// recorder collects the router.register and router.unregister bodies seen by
// one subscriber.
type recorder struct {
	mu           sync.Mutex
	registered   []routetable.RegistryMessage
	unregistered []routetable.RegistryMessage
	raw          []string
	greets       int
	sub          *nats.Subscription
}

func record(nc *nats.Conn) *recorder {
	r := &recorder{}
	sub, err := nc.Subscribe("router.*", func(m *nats.Msg) {
		defer GinkgoRecover()
		var msg routetable.RegistryMessage
		if m.Subject == routetable.SubjectGreet {
			r.mu.Lock()
			r.greets++
			r.mu.Unlock()
		}
		if m.Subject != routetable.SubjectRegister && m.Subject != routetable.SubjectUnregister {
			return
		}
		Expect(json.Unmarshal(m.Data, &msg)).To(Succeed())
		r.mu.Lock()
		defer r.mu.Unlock()
		r.raw = append(r.raw, string(m.Data))
		if m.Subject == routetable.SubjectRegister {
			r.registered = append(r.registered, msg)
		} else {
			r.unregistered = append(r.unregistered, msg)
		}
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(nc.Flush()).To(Succeed())
	r.sub = sub
	return r
}

func (r *recorder) registers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.registered)
}

func (r *recorder) greeted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.greets
}

func (r *recorder) unregisters() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.unregistered)
}

func (r *recorder) lastUnregister() routetable.RegistryMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unregistered[len(r.unregistered)-1]
}

// endpoint answers a routable instance with one proxied port and one route.
func endpoint(guid string) routeemitter.Endpoint {
	return routeemitter.Endpoint{
		GUID:       guid,
		LogGUID:    "log-" + guid,
		Index:      0,
		ExternalIP: "10.0.0.5",
		InternalIP: "10.255.0.7",
		Mappings: []routeemitter.Mapping{
			{ContainerPort: 8080, HostPort: 40001, ContainerTLSPort: 61001, HostTLSPort: 40002},
		},
		Routes: []routeemitter.Route{{Hostnames: []string{guid + ".example.com"}, Port: 8080}},
	}
}
