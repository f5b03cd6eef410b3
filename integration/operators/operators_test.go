package operators_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

func request() executor.RunRequest {
	return executor.RunRequest{
		Image:     "preloaded:busybox",
		Resources: &executor.Resources{MemoryMB: 64, DiskMB: 64},
		Process:   executor.Process{Path: "/app/server"},
		Ports:     []uint16{8080},
		Routes:    []executor.Route{{Hostnames: []string{"ops.example.com"}, Port: 8080}},
		Check:     &executor.Check{HTTP: &executor.HTTPCheck{Port: 8080, Path: "/"}},
		StopGrace: executor.Duration(3 * time.Second),
	}
}

// scrape parses /metrics with Prometheus' own text parser.
func scrape(agent *testagent.Agent) map[string]*dto.MetricFamily {
	resp, err := http.Get(agent.API + "/metrics")
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	Expect(resp.StatusCode).To(Equal(200))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return fams
}

func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
	for _, m := range f.Metric {
		match := true
		for k, v := range labels {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func sigProxy(agent *testagent.Agent, guid, sig string) {
	ps, err := agent.ContainerProcs(guid)
	Expect(err).NotTo(HaveOccurred())
	Expect(ps.Proxy).NotTo(BeNil(), "no proxy process in "+guid)
	Expect(exec.Command("kill", "-"+sig, strconv.Itoa(ps.Proxy.Pid)).Run()).To(Succeed())
}

var _ = Describe("the operators' view", func() {
	var (
		agent *testagent.Agent
		ctx   = context.Background()
	)

	BeforeEach(func() {
		var err error
		agent, err = testagent.New(GinkgoT().TempDir(), fmt.Sprintf("ops%d", time.Now().UnixNano()%100000), func(c *config.Config) {
			c.Network.Mode = "bridge"
			c.Network.Name = "cellagentops"
			c.Network.Bridge = "cellagentops0"
			c.Network.Subnet = "10.254.104.0/24"
			c.Network.HostPortRange = "46400-46499"
			c.Proxy.Enabled = true
			c.Identity.Validity = executor.Duration(20 * time.Second)
			c.HealthInterval = executor.Duration(time.Second)
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(agent.Start()).To(Succeed())
		DeferCleanup(func() {
			agent.Cleanup()
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Println(agent.LogText())
			}
		})
	})

	It("exposes metrics that follow instances as they start, rotate and stop", func() {
		before := scrape(agent)
		Expect(value(before, "cellagent_container_starts_total", nil)).To(Equal(0.0))
		Expect(value(before, "cellagent_nats_connected", nil)).To(Equal(1.0))

		_, err := agent.Client.AllocateAndRun(ctx, "ops-1", request())
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() bool { c, _ := agent.Client.Get(ctx, "ops-1"); return c.Routable }, 30*time.Second).Should(BeTrue())
		Eventually(func() float64 { return value(scrape(agent), "cellagent_route_registrations_total", nil) }).Should(Equal(1.0))
		fams := scrape(agent)
		Expect(value(fams, "cellagent_container_starts_total", nil)).To(Equal(1.0))
		Expect(value(fams, "cellagent_containers", map[string]string{"state": "running"})).To(Equal(1.0))
		Expect(value(fams, "cellagent_start_to_routable_seconds", nil)).To(Equal(1.0))
		Expect(value(fams, "cellagent_credential_issuances_total", nil)).To(Equal(1.0))
		Expect(value(fams, "cellagent_credential_issuance_seconds", nil)).To(Equal(1.0))
		Expect(value(fams, "cellagent_certificate_earliest_expiry_seconds", nil)).To(And(BeNumerically(">", 0), BeNumerically("<=", 20)))
		Expect(value(fams, "cellagent_container_memory_bytes", map[string]string{"guid": "ops-1", "component": "proxy"})).To(BeNumerically(">", 0))
		Expect(value(fams, "cellagent_container_cpu_seconds_total", map[string]string{"guid": "ops-1"})).To(BeNumerically(">", 0))

		Eventually(func() float64 { return value(scrape(agent), "cellagent_credential_rotations_total", nil) }, 30*time.Second).Should(BeNumerically(">=", 1))

		Expect(agent.Client.Stop(ctx, "ops-1")).To(Succeed())
		fams = scrape(agent)
		Expect(value(fams, "cellagent_route_unregistrations_total", nil)).To(Equal(1.0))
		Expect(value(fams, "cellagent_containers", map[string]string{"state": "completed"})).To(Equal(1.0))
		Expect(value(fams, "cellagent_containers", map[string]string{"state": "running"})).To(Equal(0.0))
	})

	It("explains a failed check and a proxy that is not ready", func() {
		_, err := agent.Client.AllocateAndRun(ctx, "ops-2", request())
		Expect(err).NotTo(HaveOccurred())
		var c executor.Container
		Eventually(func() bool { c, _ = agent.Client.Get(ctx, "ops-2"); return c.Routable }, 30*time.Second).Should(BeTrue())
		e, err := agent.Client.Explain(ctx, "ops-2")
		Expect(err).NotTo(HaveOccurred())
		Expect(e.Blocker).To(BeEmpty())
		var types []string
		for _, ev := range e.Timeline {
			types = append(types, ev.Type)
		}
		Expect(types).To(ContainElements(executor.EventContainerReserved, executor.EventCredentialsIssued,
			executor.EventContainerReady, executor.EventContainerRoutable))

		By("the app's check fails")
		resp, err := http.Get(fmt.Sprintf("http://%s:8080/sick", c.InternalIP))
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Eventually(func() string { e, _ := agent.Client.Explain(ctx, "ops-2"); return e.Blocker }, 10*time.Second).
			Should(ContainSubstring("http check on http://" + c.InternalIP + ":8080/: status 503"))
		resp, err = http.Get(fmt.Sprintf("http://%s:8080/well", c.InternalIP))
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Eventually(func() bool { c, _ := agent.Client.Get(ctx, "ops-2"); return c.Routable }, 10*time.Second).Should(BeTrue())

		By("the proxy hangs")
		sigProxy(agent, "ops-2", "STOP")
		defer sigProxy(agent, "ops-2", "CONT")
		Eventually(func() string { e, _ := agent.Client.Explain(ctx, "ops-2"); return e.Blocker }, 15*time.Second).
			Should(ContainSubstring("proxy not ready"))
		e, _ = agent.Client.Explain(ctx, "ops-2")
		Expect(e.Blocker).To(ContainSubstring(":61001"))
	})

	// SIGTERM waited up to a minute while `cellctl events --follow` was
	// connected: the API's Shutdown waited for the open stream.
	It("exits on SIGTERM with an event follower connected, and the follower says the agent shut down", func() {
		bins, err := testagent.BinDir()
		Expect(err).NotTo(HaveOccurred())
		follower := exec.Command(filepath.Join(bins, "cellctl"), "--api", agent.API, "events", "--follow")
		stdout, err := follower.StdoutPipe()
		Expect(err).NotTo(HaveOccurred())
		var stderr bytes.Buffer
		follower.Stderr = &stderr
		Expect(follower.Start()).To(Succeed())
		exited := make(chan struct{})
		var ferr error
		lines := make(chan string, 16)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				select {
				case lines <- sc.Text():
				default:
				}
			}
			ferr = follower.Wait()
			close(exited)
		}()
		DeferCleanup(func() { _ = follower.Process.Kill(); Eventually(exited, 10*time.Second).Should(BeClosed()) })

		By("the follower sees a reservation, so its stream is open")
		Expect(agent.Client.Allocate(ctx, []executor.AllocationRequest{{GUID: "ops-term", Resources: executor.Resources{MemoryMB: 8, DiskMB: 8}}})).To(BeEmpty())
		Eventually(lines, 20*time.Second).Should(Receive(ContainSubstring("ops-term")))

		By("SIGTERM: the agent exits (Stop fails past 20 s) and so does the follower, saying why")
		Expect(agent.Stop()).To(Succeed())
		Eventually(exited, 20*time.Second).Should(BeClosed())
		Expect(ferr).To(HaveOccurred(), "an ended follow is not a success")
		Expect(stderr.String()).To(ContainSubstring("agent shut down; the event stream ended"))
	})
})
