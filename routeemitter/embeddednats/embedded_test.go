package embeddednats_test

import (
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/ginkgomon_v2"
	"go.uber.org/goleak"

	"github.com/cellagent/cellagent/routeemitter/embeddednats"
	"github.com/cellagent/cellagent/routeemitter/natsauth"
)

func TestEmbeddedNATS(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "EmbeddedNATS Suite")
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(10 * time.Second)
})

// leakCheck checks after the spec that every goroutine it started has ended.
func leakCheck() {
	ignore := goleak.IgnoreCurrent()
	DeferCleanup(func() {
		Eventually(func() error { return goleak.Find(ignore) }).Should(Succeed())
	})
}

// start runs a server on listen until the spec ends.
func start(listen string) *embeddednats.EmbeddedNATS {
	e, err := embeddednats.NewEmbeddedNATS(lagertest.NewTestLogger("nats"), listen, GinkgoT().TempDir())
	Expect(err).NotTo(HaveOccurred())
	p := ifrit.Invoke(e)
	DeferCleanup(func() { ginkgomon_v2.Interrupt(p, 10*time.Second) })
	return e
}

var _ = Describe("EmbeddedNATS", func() {
	It("rejects a bad listen address", func() {
		_, err := embeddednats.NewEmbeddedNATS(lagertest.NewTestLogger("test"), "4222", GinkgoT().TempDir())
		Expect(err).To(HaveOccurred())
	})

	It("knows its URL before Run for a fixed port", func() {
		e, err := embeddednats.NewEmbeddedNATS(lagertest.NewTestLogger("test"), "127.0.0.1:4333", GinkgoT().TempDir())
		Expect(err).NotTo(HaveOccurred())
		Expect(e.ClientURL()).To(Equal("nats://127.0.0.1:4333"))
	})

	It("picks a free port for port 0 and fails to start on a port in use", func() {
		leakCheck()
		first := start("127.0.0.1:0")
		Expect(first.ClientURL()).To(MatchRegexp(`^nats://127\.0\.0\.1:\d+$`))
		Expect(first.ClientURL()).NotTo(HaveSuffix(":0"))
		nc, err := nats.Connect(first.ClientURL())
		Expect(err).NotTo(HaveOccurred())
		defer nc.Close()
		Expect(nc.IsConnected()).To(BeTrue())

		second, err := embeddednats.NewEmbeddedNATS(lagertest.NewTestLogger("test"),
			first.ClientURL()[len("nats://"):], GinkgoT().TempDir())
		Expect(err).NotTo(HaveOccurred())
		p := ifrit.Background(second)
		Eventually(p.Wait()).Should(Receive(HaveOccurred()))
	})
})

// Issue 13 item 9: the embedded NATS had no authentication and could bind
// off loopback; a router.start with a huge interval stopped
// re-registration (and could overflow).
var _ = Describe("embedded NATS authentication", func() {
	It("listens on loopback only", func() {
		for _, addr := range []string{"0.0.0.0:4222", "10.1.2.3:4222", "[::]:4222", "cell.example:4222"} {
			_, err := embeddednats.NewEmbeddedNATS(lagertest.NewTestLogger("test"), addr, GinkgoT().TempDir())
			Expect(err).To(MatchError(ContainSubstring("must be a loopback address")), addr)
		}
	})

	It("accepts only clients with the user and password", func() {
		leakCheck()
		// Port 0: the server binds a free port itself. A port asked of
		// the kernel and bound later was once taken meanwhile by a test
		// server of another package (the unit tests run in parallel),
		// which this spec then connected to (CI, 2026-12-03).
		e, err := embeddednats.NewEmbeddedNATS(lagertest.NewTestLogger("nats"), "127.0.0.1:0", GinkgoT().TempDir())
		Expect(err).NotTo(HaveOccurred())
		e.RequireAuth(natsauth.EmbeddedAuth{User: "cellagent", Password: "s3cret"})
		p := ifrit.Invoke(e)
		DeferCleanup(func() { ginkgomon_v2.Interrupt(p, 10*time.Second) })

		_, err = nats.Connect(e.ClientURL(), nats.NoReconnect())
		Expect(err).To(MatchError(ContainSubstring("Authorization Violation")))
		_, err = nats.Connect(e.ClientURL(), nats.UserInfo("cellagent", "wrong"), nats.NoReconnect())
		Expect(err).To(HaveOccurred())
		nc, err := nats.Connect(e.ClientURL(), nats.UserInfo("cellagent", "s3cret"))
		Expect(err).NotTo(HaveOccurred())
		nc.Close()
	})
})
