package routeemitter_test

import (
	"os"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/ginkgomon_v2"

	"github.com/cellagent/cellagent/routeemitter"
)

// Issue 13 item 9: an external NATS could only take a user and password in
// the URLs (or a TLS client certificate).
var _ = Describe("an external NATS that requires an nkey", func() {
	It("is reached with nats.nkey_seed_file and refused without it", func() {
		leakCheck()
		user, err := nkeys.CreateUser()
		Expect(err).NotTo(HaveOccurred())
		pub, err := user.PublicKey()
		Expect(err).NotTo(HaveOccurred())
		seed, err := user.Seed()
		Expect(err).NotTo(HaveOccurred())
		seedFile := filepath.Join(GinkgoT().TempDir(), "cell.nk")
		Expect(os.WriteFile(seedFile, seed, 0o600)).To(Succeed())

		srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true,
			Nkeys: []*server.NkeyUser{{Nkey: pub}}})
		Expect(err).NotTo(HaveOccurred())
		srv.Start()
		DeferCleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
		Expect(srv.ReadyForConnections(10 * time.Second)).To(BeTrue())

		run := func(seedFile string) *routeemitter.Emitter {
			e, err := routeemitter.New(lagertest.NewTestLogger("test"), routeemitter.Config{
				URLs: []string{srv.ClientURL()}, NKeySeedFile: seedFile, DataDir: GinkgoT().TempDir(),
				CellID: "cell-1", Zone: "z1", ReconnectWait: 50 * time.Millisecond,
				Clock: fakeclock.NewFakeClock(time.Unix(1700000000, 0)),
			}, nil)
			Expect(err).NotTo(HaveOccurred())
			p := ifrit.Background(e)
			DeferCleanup(func() { ginkgomon_v2.Interrupt(p, 10*time.Second) })
			return e
		}
		Eventually(run(seedFile).ConnectionState).Should(Equal(routeemitter.StateConnected))
		Consistently(run("").ConnectionState).ShouldNot(Equal(routeemitter.StateConnected))
	})
})
