package routetable_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/ginkgomon_v2"

	"github.com/cellagent/cellagent/routeemitter/embeddednats"
	"github.com/cellagent/cellagent/routeemitter/routetable"
)

func TestRouteTable(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "RouteTable Suite")
}

var _ = Describe("RouteTable", func() {
	msg := func(host string, port, tlsPort uint16, guid string, uris ...string) routetable.RegistryMessage {
		return routetable.RegistryMessage{Host: host, Port: port, TLSPort: tlsPort, URIs: uris,
			App: "a1", PrivateInstanceID: guid, PrivateInstanceIndex: "0", ServerCertDomainSAN: guid}
	}
	type step struct {
		msg        routetable.RegistryMessage
		registered bool
		changed    bool
	}

	DescribeTable("applies registers and unregisters like Gorouter",
		func(steps []step, want []string) {
			table := routetable.NewRouteTable()
			for i, s := range steps {
				Expect(table.Apply(s.msg, s.registered)).To(Equal(s.changed), "step %d", i)
			}
			var got []string
			for _, e := range table.Snapshot() {
				got = append(got, fmt.Sprintf("%s %s %s tls=%t", e.URI, e.Address, e.PrivateInstanceID, e.TLS))
			}
			Expect(got).To(Equal(want))
			Expect(table.Len()).To(Equal(len(want)))
		},
		Entry("sorted by uri, then address", []step{
			{msg("10.0.0.5", 40001, 0, "g2", "b.example.com", "a.example.com"), true, true},
			{msg("10.0.0.4", 40001, 40002, "g1", "b.example.com"), true, true},
		}, []string{
			"a.example.com 10.0.0.5:40001 g2 tls=false",
			"b.example.com 10.0.0.4:40002 g1 tls=true",
			"b.example.com 10.0.0.5:40001 g2 tls=false",
		}),
		Entry("a re-emission changes nothing", []step{
			{msg("10.0.0.5", 40001, 40002, "g1", "a.example.com"), true, true},
			{msg("10.0.0.5", 40001, 40002, "g1", "a.example.com"), true, false},
		}, []string{"a.example.com 10.0.0.5:40002 g1 tls=true"}),
		Entry("same key replaces the endpoint (a reused host port)", []step{
			{msg("10.0.0.5", 40001, 40002, "g1", "a.example.com"), true, true},
			{msg("10.0.0.5", 40009, 40002, "g2", "a.example.com"), true, true},
		}, []string{"a.example.com 10.0.0.5:40002 g2 tls=true"}),
		Entry("unregister removes exactly the key", []step{
			{msg("10.0.0.5", 40001, 40002, "g1", "a.example.com", "b.example.com"), true, true},
			{msg("10.0.0.5", 40003, 40004, "g2", "a.example.com"), true, true},
			{msg("10.0.0.5", 40001, 40002, "g1", "a.example.com"), false, true},
		}, []string{
			"a.example.com 10.0.0.5:40004 g2 tls=true",
			"b.example.com 10.0.0.5:40002 g1 tls=true",
		}),
		Entry("unregister of an unknown key is a no-op", []step{
			{msg("10.0.0.5", 40001, 0, "g1", "a.example.com"), true, true},
			{msg("10.0.0.5", 40001, 40002, "g1", "a.example.com"), false, false},
		}, []string{"a.example.com 10.0.0.5:40001 g1 tls=false"}),
		Entry("uris compare case-insensitively without a trailing slash", []step{
			{msg("10.0.0.5", 40001, 0, "g1", "App.Example.com/"), true, true},
			{msg("10.0.0.5", 40001, 0, "g1", "app.example.com"), false, true},
		}, nil),
	)

	It("is fed by WatchRoutes in message order, skipping what Gorouter would drop", func() {
		srv, err := embeddednats.NewEmbeddedNATS(lagertest.NewTestLogger("nats"), "127.0.0.1:0", GinkgoT().TempDir())
		Expect(err).NotTo(HaveOccurred())
		p := ifrit.Invoke(srv)
		DeferCleanup(func() { ginkgomon_v2.Interrupt(p, 10*time.Second) })
		nc, err := nats.Connect(srv.ClientURL())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(nc.Close)

		table := routetable.NewRouteTable()
		var (
			mu     sync.Mutex
			events []string
		)
		sub, err := routetable.WatchRoutes(lagertest.NewTestLogger("test"), nc, table, func(ev routetable.RouteEvent) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, fmt.Sprintf("%t %s %t", ev.Registered, ev.Message.PrivateInstanceID, ev.Changed))
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(sub.Unsubscribe)

		reg := `{"host":"10.0.0.5","port":40001,"tls_port":40002,"uris":["a.example.com"],"private_instance_id":"g1","private_instance_index":"0"}`
		for _, m := range []struct{ subject, body string }{
			{routetable.SubjectRegister, `{"host":"10.0.0.9","port":1,"uris":["x.example.com"],"private_instance_index":0}`}, // index as a number
			{routetable.SubjectGreet, `{}`},
			{routetable.SubjectRegister, reg},
			{routetable.SubjectRegister, reg},
			{routetable.SubjectUnregister, reg},
		} {
			Expect(nc.Publish(m.subject, []byte(m.body))).To(Succeed())
		}
		Eventually(func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), events...) }).
			Should(Equal([]string{"true g1 true", "true g1 false", "false g1 true"}))
		Expect(table.Len()).To(BeZero())
	})
})
