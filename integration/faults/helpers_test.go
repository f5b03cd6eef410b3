package faults_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

// The suite's own bridge network and host ports, clear of the other
// suites' and of cellbench's.
const (
	netName   = "cellagentft"
	netBridge = "cellagentft0"
	netSubnet = "10.254.140.0/24"
	hostPorts = "49500-49899"
)

var (
	ctx       = context.Background()
	netDialer = net.Dialer{Timeout: 3 * time.Second}
)

// newAgent prepares (without starting) an agent on the suite's network with
// the proxy on. When the spec ends every container is deleted and the
// agent stopped; on failure its log is printed.
func newAgent(prefix string, modify func(*config.Config)) *testagent.Agent {
	agent, err := testagent.New(GinkgoT().TempDir(), fmt.Sprintf("%s%d", prefix, time.Now().UnixNano()%100000), func(c *config.Config) {
		c.Network.Mode = "bridge"
		c.Network.Name = netName
		c.Network.Bridge = netBridge
		c.Network.Subnet = netSubnet
		c.Network.HostPortRange = hostPorts
		c.Proxy.Enabled = true
		c.Listen.Pprof = true // goroutine counts
		if modify != nil {
			modify(c)
		}
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		agent.Cleanup()
		if CurrentSpecReport().Failed() {
			log := agent.LogText()
			if len(log) > 60000 {
				log = log[len(log)-60000:]
			}
			GinkgoWriter.Println(log)
		}
	})
	return agent
}

func startAgent(prefix string, modify func(*config.Config)) *testagent.Agent {
	agent := newAgent(prefix, modify)
	Expect(agent.Start()).To(Succeed())
	return agent
}

func request(routes ...string) executor.RunRequest {
	req := executor.RunRequest{
		Image:     "preloaded:busybox",
		LogGUID:   "faults",
		Resources: &executor.Resources{MemoryMB: 64, DiskMB: 64},
		Process:   executor.Process{Path: "/app/server"},
		Ports:     []uint16{8080},
		Check:     &executor.Check{HTTP: &executor.HTTPCheck{Port: 8080, Path: "/"}},
		StopGrace: executor.Duration(3 * time.Second),
	}
	if len(routes) > 0 {
		req.Routes = []executor.Route{{Hostnames: routes, Port: 8080}}
	}
	return req
}

// runRoutable starts guid and waits until it is running and routable.
func runRoutable(agent *testagent.Agent, guid string, req executor.RunRequest) executor.Container {
	_, err := agent.Client.AllocateAndRun(ctx, guid, req)
	Expect(err).NotTo(HaveOccurred())
	_, err = agent.WaitState(guid, executor.StateRunning, 60*time.Second)
	Expect(err).NotTo(HaveOccurred())
	var c executor.Container
	Eventually(func() bool { c, _ = agent.Client.Get(ctx, guid); return c.Routable }, 30*time.Second, 100*time.Millisecond).
		Should(BeTrue(), "%s routable", guid)
	return c
}

func httpGet(url string) (string, error) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// answers checks that the app of c answers on its host port.
func answers(c executor.Container) {
	Expect(httpGet(fmt.Sprintf("http://127.0.0.1:%d/", c.Ports[0].HostPort))).To(ContainSubstring("hello from " + c.GUID))
}

// servedSerial is the serial of the certificate the proxy of c serves to a
// router that trusts caPEM.
func servedSerial(c executor.Container, caPEM []byte) (string, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return "", fmt.Errorf("no CA certificate")
	}
	conn, err := tls.DialWithDialer(&netDialer, "tcp", fmt.Sprintf("%s:%d", c.ExternalIP, c.Ports[0].HostTLSProxyPort),
		&tls.Config{RootCAs: pool, ServerName: c.GUID})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}

// expectNothingOrphaned takes the agent's inventory and fails on anything
// it names (orphans, tasks of completed containers, stale journaled
// routes). Deletes may still be finishing, hence the short Eventually.
func expectNothingOrphaned(agent *testagent.Agent) testagent.Inventory {
	var inv testagent.Inventory
	Eventually(func(g Gomega) {
		listed, err := agent.Client.List(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		inv, err = testagent.TakeInventory(agent)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(inv.Problems(listed)).To(BeEmpty())
	}, 10*time.Second, 500*time.Millisecond).Should(Succeed())
	GinkgoWriter.Println("inventory:", inv.Count())
	return inv
}

// deleteAllAndExpectEmpty deletes every container through the API, one
// at a time (concurrent_delete_test.go covers deletes at once), then
// expects nothing of the agent to be left on the host.
func deleteAllAndExpectEmpty(agent *testagent.Agent) {
	cs, err := agent.Client.List(ctx)
	Expect(err).NotTo(HaveOccurred())
	for _, c := range cs {
		Expect(agent.Client.Delete(ctx, c.GUID)).To(Succeed(), "delete %s", c.GUID)
	}
	expectEmpty(agent)
}

// expectEmpty expects nothing of the agent to be left on the host.
func expectEmpty(agent *testagent.Agent) {
	Eventually(func(g Gomega) {
		inv, err := testagent.TakeInventory(agent)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(inv.Empty()).To(BeEmpty())
	}, 15*time.Second, 500*time.Millisecond).Should(Succeed())
}

// routeJournal answers the guids with registrations in the agent's route
// journal.
func routeJournal(agent *testagent.Agent) map[string]bool {
	b, err := os.ReadFile(filepath.Join(agent.Config.DataDir, "routeemitter", "routes.json"))
	if err != nil {
		return nil
	}
	var j struct {
		Registered map[string]json.RawMessage `json:"registered"`
	}
	Expect(json.Unmarshal(b, &j)).To(Succeed())
	out := map[string]bool{}
	for g := range j.Registered {
		out[g] = true
	}
	return out
}

// routeMsg is the part of a router.register/unregister this suite reads.
type routeMsg struct {
	Subject string
	GUID    string
	At      time.Time
}

// routeRecorder keeps every router.register and router.unregister seen.
type routeRecorder struct {
	mu   sync.Mutex
	msgs []routeMsg
}

func (r *routeRecorder) subscribe(nc *nats.Conn) {
	for _, subj := range []string{"router.register", "router.unregister"} {
		_, err := nc.Subscribe(subj, func(m *nats.Msg) {
			var body struct {
				PrivateInstanceID string `json:"private_instance_id"`
			}
			_ = json.Unmarshal(m.Data, &body)
			r.mu.Lock()
			r.msgs = append(r.msgs, routeMsg{m.Subject, body.PrivateInstanceID, time.Now()})
			r.mu.Unlock()
		})
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(nc.Flush()).To(Succeed())
}

// since answers the messages on subject received at or after t.
func (r *routeRecorder) since(subject string, t time.Time) []routeMsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []routeMsg
	for _, m := range r.msgs {
		if m.Subject == subject && !m.At.Before(t) {
			out = append(out, m)
		}
	}
	return out
}

// first answers when guid was first seen on subject at or after t.
func (r *routeRecorder) first(subject, guid string, t time.Time) (time.Time, bool) {
	for _, m := range r.since(subject, t) {
		if m.GUID == guid {
			return m.At, true
		}
	}
	return time.Time{}, false
}

func routerStart(nc *nats.Conn, intervalSeconds int) {
	Expect(nc.Publish("router.start", []byte(fmt.Sprintf(`{"id":"faults-router","hosts":[],"minimumRegisterIntervalInSeconds":%d}`, intervalSeconds)))).To(Succeed())
	Expect(nc.Flush()).To(Succeed())
}

// eventLog collects an agent's event stream from a sequence number on.
type eventLog struct {
	mu     sync.Mutex
	events []executor.Event
	cancel context.CancelFunc
	closed chan struct{}
}

func collectEvents(agent *testagent.Agent, since uint64) *eventLog {
	evCtx, cancel := context.WithCancel(ctx)
	evs, err := agent.Client.Events(evCtx, since)
	Expect(err).NotTo(HaveOccurred())
	l := &eventLog{cancel: cancel, closed: make(chan struct{})}
	go func() {
		defer close(l.closed)
		for ev := range evs {
			l.mu.Lock()
			l.events = append(l.events, ev)
			l.mu.Unlock()
		}
	}()
	DeferCleanup(func() { cancel(); <-l.closed })
	return l
}

func (l *eventLog) all() []executor.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]executor.Event(nil), l.events...)
}

func (l *eventLog) of(typ, guid string) []executor.Event {
	var out []executor.Event
	for _, ev := range l.all() {
		if ev.Type == typ && (guid == "" || ev.GUID == guid) {
			out = append(out, ev)
		}
	}
	return out
}

// describe lists the events about guid, one per line.
func (l *eventLog) describe(guid string) string {
	var lines []string
	for _, ev := range l.all() {
		if ev.GUID == guid {
			lines = append(lines, fmt.Sprintf("%d %s %s", ev.Seq, ev.Type, ev.Message))
		}
	}
	return strings.Join(lines, "\n")
}

// isClosed tells whether the stream ended (the agent closed it).
func (l *eventLog) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}

func summary(cs []executor.Container) string {
	n := map[executor.State]int{}
	for _, c := range cs {
		n[c.State]++
	}
	var parts []string
	for _, s := range []executor.State{executor.StateReserved, executor.StateInitializing, executor.StateCreated, executor.StateRunning, executor.StateCompleted} {
		if n[s] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", s, n[s]))
		}
	}
	return strings.Join(parts, " ")
}
