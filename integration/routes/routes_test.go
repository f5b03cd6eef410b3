package routes_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
	"github.com/cellagent/cellagent/routeemitter"
)

// gorouterMessage mirrors the JSON types Gorouter decodes
// (mbus/subscriber.go); a type mismatch fails the strict decode.
type gorouterMessage struct {
	Host                 string            `json:"host"`
	Port                 uint16            `json:"port"`
	TLSPort              uint16            `json:"tls_port"`
	URIs                 []string          `json:"uris"`
	App                  string            `json:"app"`
	PrivateInstanceID    string            `json:"private_instance_id"`
	PrivateInstanceIndex string            `json:"private_instance_index"`
	ServerCertDomainSAN  string            `json:"server_cert_domain_san"`
	AvailabilityZone     string            `json:"availability_zone"`
	Tags                 map[string]string `json:"tags"`
	EndpointUpdatedAtNs  int64             `json:"endpoint_updated_at_ns"`
}

type received struct {
	subject string
	msg     gorouterMessage
	at      time.Time
}

// recorder keeps every router.* message seen on NATS.
type recorder struct {
	mu   sync.Mutex
	msgs []received
}

func (r *recorder) add(m *nats.Msg) {
	var g gorouterMessage
	dec := json.NewDecoder(bytes.NewReader(m.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil {
		defer GinkgoRecover()
		Fail(fmt.Sprintf("message on %s does not decode with Gorouter's types: %v: %s", m.Subject, err, m.Data))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, received{m.Subject, g, time.Now()})
}

func (r *recorder) of(subject, guid string) []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []received
	for _, m := range r.msgs {
		if m.subject == subject && m.msg.PrivateInstanceID == guid {
			out = append(out, m)
		}
	}
	return out
}

func subscribe(nc *nats.Conn, rec *recorder) {
	for _, subj := range []string{"router.register", "router.unregister"} {
		_, err := nc.Subscribe(subj, rec.add)
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(nc.Flush()).To(Succeed())
}

func request(routes ...string) executor.RunRequest {
	req := executor.RunRequest{
		Image:     "preloaded:busybox",
		LogGUID:   "app-log-guid",
		Index:     2,
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

var _ = Describe("route registration through the agent", func() {
	var (
		agent *testagent.Agent
		rec   *recorder
		nc    *nats.Conn
		ctx   = context.Background()
	)

	BeforeEach(func() {
		var err error
		agent, err = testagent.New(GinkgoT().TempDir(), fmt.Sprintf("rt%d", time.Now().UnixNano()%100000), func(c *config.Config) {
			c.Network.Mode = "bridge"
			c.Network.Name = "cellagentrt"
			c.Network.Bridge = "cellagentrt0"
			c.Network.Subnet = "10.254.102.0/24"
			c.Network.HostPortRange = "46200-46299"
			c.HealthInterval = executor.Duration(time.Second)
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(agent.Start()).To(Succeed())
		nc, err = nats.Connect(agent.NATSURL())
		Expect(err).NotTo(HaveOccurred())
		rec = &recorder{}
		subscribe(nc, rec)
		DeferCleanup(func() {
			nc.Close()
			agent.Cleanup()
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Println(agent.LogText())
			}
		})
	})

	It("registers with Gorouter's field types and the instance's ports, then unregisters before the app gets SIGTERM", func() {
		_, err := agent.Client.AllocateAndRun(ctx, "rt-1", request("app.example.com", "www.example.com/path"))
		Expect(err).NotTo(HaveOccurred())
		c, err := agent.WaitState("rt-1", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() []received { return rec.of("router.register", "rt-1") }, 10*time.Second).ShouldNot(BeEmpty())
		m := rec.of("router.register", "rt-1")[0].msg
		Expect(m.Host).To(Equal(c.ExternalIP))
		Expect(m.Port).To(Equal(c.Ports[0].HostPort))
		Expect(m.URIs).To(ConsistOf("app.example.com", "www.example.com/path"))
		Expect(m.App).To(Equal("app-log-guid"))
		Expect(m.PrivateInstanceIndex).To(Equal("2"))
		Expect(m.ServerCertDomainSAN).To(Equal("rt-1"))
		Expect(m.AvailabilityZone).To(Equal(agent.Config.Zone))
		Expect(m.Tags).To(HaveKeyWithValue("component", "cellagent"))

		By("the raw JSON carries the index as a string")
		raw := make(chan []byte, 1)
		sub, err := nc.Subscribe("router.register", func(msg *nats.Msg) {
			select {
			case raw <- msg.Data:
			default:
			}
		})
		Expect(err).NotTo(HaveOccurred())
		defer sub.Unsubscribe()
		Expect(nc.Publish("router.start", []byte(`{"id":"t","hosts":[],"minimumRegisterIntervalInSeconds":20}`))).To(Succeed())
		Eventually(raw, 10*time.Second).Should(Receive(ContainSubstring(`"private_instance_index":"2"`)))

		By("stop: unregister (same host and port) comes before the app's SIGTERM")
		Expect(agent.Client.Stop(ctx, "rt-1")).To(Succeed())
		Eventually(func() []received { return rec.of("router.unregister", "rt-1") }).ShouldNot(BeEmpty())
		un := rec.of("router.unregister", "rt-1")[0]
		Expect(un.msg.Host).To(Equal(m.Host))
		Expect(un.msg.Port).To(Equal(m.Port))
		Expect(un.msg.TLSPort).To(Equal(m.TLSPort))
		rc, err := agent.Client.Logs(ctx, "rt-1", executor.LogOptions{})
		Expect(err).NotTo(HaveOccurred())
		logs, _ := io.ReadAll(rc)
		rc.Close()
		match := regexp.MustCompile(`got SIGTERM at (\d+)`).FindSubmatch(logs)
		Expect(match).NotTo(BeNil(), string(logs))
		sigAt, _ := strconv.ParseInt(string(match[1]), 10, 64)
		Expect(un.at.UnixNano()).To(BeNumerically("<", sigAt), "unregister received %s before SIGTERM", time.Duration(sigAt-un.at.UnixNano()))
	})

	It("unregisters an instance that stops being ready and registers it again when it recovers", func() {
		_, err := agent.Client.AllocateAndRun(ctx, "rt-sick", request("sick.example.com"))
		Expect(err).NotTo(HaveOccurred())
		c, err := agent.WaitState("rt-sick", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() []received { return rec.of("router.register", "rt-sick") }, 10*time.Second).ShouldNot(BeEmpty())
		resp, err := http.Get(fmt.Sprintf("http://%s:8080/sick", c.InternalIP))
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Eventually(func() []received { return rec.of("router.unregister", "rt-sick") }, 15*time.Second).ShouldNot(BeEmpty())
		c, _ = agent.Client.Get(ctx, "rt-sick")
		Expect(c.Routable).To(BeFalse())
		Expect(c.State).To(Equal(executor.StateRunning))
		registered := len(rec.of("router.register", "rt-sick"))
		resp, err = http.Get(fmt.Sprintf("http://%s:8080/well", c.InternalIP))
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Eventually(func() bool { c, _ := agent.Client.Get(ctx, "rt-sick"); return c.Routable }, 15*time.Second).Should(BeTrue())
		Eventually(func() int { return len(rec.of("router.register", "rt-sick")) }, 10*time.Second).Should(BeNumerically(">", registered))
	})

	It("unregisters an instance whose app crashes", func() {
		_, err := agent.Client.AllocateAndRun(ctx, "rt-crash", request("crash.example.com"))
		Expect(err).NotTo(HaveOccurred())
		c, err := agent.WaitState("rt-crash", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() []received { return rec.of("router.register", "rt-crash") }, 10*time.Second).ShouldNot(BeEmpty())
		resp, err := http.Get(fmt.Sprintf("http://%s:8080/exit?code=2", c.InternalIP))
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Eventually(func() []received { return rec.of("router.unregister", "rt-crash") }, 10*time.Second).ShouldNot(BeEmpty())
	})

	It("unregisters routes of a container deleted while the agent was down", func() {
		_, err := agent.Client.AllocateAndRun(ctx, "rt-gone", request("gone.example.com"))
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("rt-gone", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() []received { return rec.of("router.register", "rt-gone") }, 10*time.Second).ShouldNot(BeEmpty())

		agent.Kill9()
		By("an operator deletes the container by hand")
		ns := agent.Config.Containerd.Namespace
		for _, args := range [][]string{{"tasks", "kill", "-s", "SIGKILL", "rt-gone"}, {"tasks", "rm", "-f", "rt-gone"}, {"containers", "rm", "rt-gone"}} {
			out, err := exec.Command("ctr", append([]string{"--address", testagent.Socket(), "-n", ns}, args...)...).CombinedOutput()
			if args[1] == "kill" {
				continue // may race with the exit
			}
			Expect(err).NotTo(HaveOccurred(), string(out))
			time.Sleep(200 * time.Millisecond)
		}
		nc.Close()
		Expect(agent.Start()).To(Succeed())
		nc, err = nats.Connect(agent.NATSURL())
		Expect(err).NotTo(HaveOccurred())
		subscribe(nc, rec)
		// The tombstone is repeated, so a subscriber that reconnects sees it.
		Eventually(func() []received { return rec.of("router.unregister", "rt-gone") }, 20*time.Second).ShouldNot(BeEmpty())
		c, err := agent.Client.Get(ctx, "rt-gone")
		Expect(err).NotTo(HaveOccurred())
		Expect(c.State).To(Equal(executor.StateCompleted))
		Expect(c.RunResult.FailureReason).To(ContainSubstring("missing runtime container"))
	})

	It("publishes the cell's presence with the store's figures, as /v1/state shows them, following an allocation and its delete", func() {
		js, err := jetstream.New(nc)
		Expect(err).NotTo(HaveOccurred())
		presence := func() (routeemitter.CellPresence, error) {
			var p routeemitter.CellPresence
			kv, err := js.KeyValue(ctx, routeemitter.PresenceBucket)
			if err != nil {
				return p, err
			}
			entry, err := kv.Get(ctx, agent.Config.CellID)
			if err != nil {
				return p, err
			}
			return p, json.Unmarshal(entry.Value(), &p)
		}
		type cellFigures struct {
			available  routeemitter.Resources
			containers int
		}
		figures := func() (cellFigures, error) {
			p, err := presence()
			return cellFigures{p.Available, p.Containers}, err
		}
		resources := func(t executor.ResourceTotals) routeemitter.Resources {
			return routeemitter.Resources{MemoryMB: t.MemoryMB, DiskMB: t.DiskMB, Containers: t.Containers}
		}
		idle, err := agent.Client.State(ctx)
		Expect(err).NotTo(HaveOccurred())
		Eventually(figures, 15*time.Second).Should(Equal(cellFigures{resources(idle.Available), 0}))
		p, err := presence()
		Expect(err).NotTo(HaveOccurred())
		Expect(p.Total).To(Equal(resources(idle.Total)))

		failures, err := agent.Client.Allocate(ctx, []executor.AllocationRequest{{GUID: "rt-presence",
			Resources: executor.Resources{MemoryMB: 64, DiskMB: 64}}})
		Expect(err).NotTo(HaveOccurred())
		Expect(failures).To(BeEmpty())
		held, err := agent.Client.State(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(held.Available.MemoryMB).To(BeNumerically("<", idle.Available.MemoryMB))
		Eventually(figures, 15*time.Second).Should(Equal(cellFigures{resources(held.Available), 1}))

		Expect(agent.Client.Delete(ctx, "rt-presence")).To(Succeed())
		Eventually(figures, 15*time.Second).Should(Equal(cellFigures{resources(idle.Available), 0}))
	})

	It("rejects bad routes with InvalidRequest", func() {
		cases := []executor.Route{
			{Hostnames: []string{"not a host"}, Port: 8080},
			{Hostnames: []string{"-bad.example.com"}, Port: 8080},
			{Hostnames: []string{"ok.example.com"}, Port: 9999},
		}
		many := make([]string, 1001)
		for i := range many {
			many[i] = fmt.Sprintf("h%d.example.com", i)
		}
		cases = append(cases, executor.Route{Hostnames: many, Port: 8080})
		for _, r := range cases {
			req := request()
			req.Routes = []executor.Route{r}
			_, err := agent.Client.AllocateAndRun(ctx, "rt-bad", req)
			Expect(err).To(MatchError(executor.ErrInvalidRequest))
		}
	})
})
