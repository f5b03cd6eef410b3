package diego_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

const (
	cellID   = "diegocell1"
	stack    = "cflinuxfs4"
	appPort  = 8080
	waitLong = 2 * time.Minute
)

// desiredLRP is a desired LRP running the demo app on the preloaded stack.
func desiredLRP(guid string, instances int) string {
	return fmt.Sprintf(`{"process_guid": %q, "domain": "cellagent-it", "rootfs": "preloaded:%s", "instances": %d,
 "memory_mb": 64, "disk_mb": 64, "ports": [%d], "env": [{"name": "PORT", "value": "%d"}],
 "action": {"codependent": {"actions": [{"run": {"path": "/app/server", "user": "vcap"}}]}},
 "check_definition": {"checks": [{"tcp_check": {"port": %d}}]},
 "start_timeout_ms": 60000, "log_guid": %q,
 "routes": {"cf-router": [{"hostnames": ["%s.example.com"], "port": %d}]},
 "metric_tags": {"source_id": {"static": %q}, "instance": {"dynamic": "INDEX"}}}`,
		guid, stack, instances, appPort, appPort, appPort, guid, guid, appPort, guid)
}

// diegoContainers are the agent's containers that belong to processGUID.
func diegoContainers(agent *testagent.Agent, processGUID string) []executor.Container {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	all, err := agent.Client.List(c)
	Expect(err).NotTo(HaveOccurred())
	var out []executor.Container
	for _, c := range all {
		if c.Tags["diego.process-guid"] == processGUID {
			out = append(out, c)
		}
	}
	return out
}

// runOne desires a one-instance LRP, removed when the spec ends, and
// waits until it runs.
func runOne(k *kit, guid string) []actualLRP {
	_, err := k.bbsctl(desiredLRP(guid, 1), "desire-lrp")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { _, _ = k.bbsctl("", "remove-lrp", guid) })
	lrps, err := k.waitActual(guid, "RUNNING", 1, waitLong)
	Expect(err).NotTo(HaveOccurred())
	return lrps
}

// removeAndWaitGone removes the desired LRP and waits until neither BBS
// nor the cell has anything of it left.
func removeAndWaitGone(k *kit, agent *testagent.Agent, guid string) {
	_, err := k.bbsctl("", "remove-lrp", guid)
	Expect(err).NotTo(HaveOccurred())
	Eventually(func() ([]actualLRP, error) { return k.actualLRPs(guid) }, waitLong, time.Second).Should(BeEmpty())
	Eventually(func() []executor.Container { return diegoContainers(agent, guid) }, waitLong, time.Second).Should(BeEmpty())
}

// appURL is where BBS says the instance is reachable from the cell's host.
func appURL(l actualLRP) string {
	return "http://" + net.JoinHostPort(l.Address, strconv.Itoa(int(l.Ports[0].HostPort)))
}

func get(url string) (string, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

var _ = Describe("cellagent as a Diego cell", Ordered, func() {
	var (
		k     *kit
		agent *testagent.Agent
	)

	BeforeAll(func() {
		k, agent = startCell(cellID, cellOptions{}, cellNetwork{name: "cellagentdiego", bridge: "cadiego0",
			subnet: "10.254.170.0/24", ports: "47100-47199"})
	})

	It("holds a presence that bbsctl cells shows, with its stacks", func() {
		Eventually(k.cells, 30*time.Second, 500*time.Millisecond).Should(HaveLen(1))
		cells, err := k.cells()
		Expect(err).NotTo(HaveOccurred())
		Expect(cells[0].CellID).To(Equal(cellID))
		Expect(cells[0].RepAddress).To(Equal(agent.Config.Diego.Rep.URL))
		Expect(cells[0].RootFSProviders).To(HaveLen(2))
		Expect(cells[0].RootFSProviders[0].Name).To(Equal("preloaded"))
		Expect(cells[0].RootFSProviders[0].Properties).To(Equal([]string{stack}))
		Expect(cells[0].RootFSProviders[1].Name).To(Equal("docker"))
		Expect(cells[0].RootFSProviders[1].Properties).To(BeEmpty())
	})

	It("runs a desired LRP's 2 instances on this cell with their net info, scales to 1, and removes it", func() {
		const guid = "it-app-1"
		_, err := k.bbsctl(desiredLRP(guid, 2), "desire-lrp")
		Expect(err).NotTo(HaveOccurred())

		lrps, err := k.waitActual(guid, "RUNNING", 2, waitLong)
		Expect(err).NotTo(HaveOccurred())
		ctrs := map[string]executor.Container{}
		for _, c := range diegoContainers(agent, guid) {
			ctrs[c.GUID] = c
		}
		Expect(ctrs).To(HaveLen(2))
		indexes := map[int]bool{}
		for _, l := range lrps {
			indexes[l.Index] = true
			Expect(l.CellID).To(Equal(cellID))
			c, ok := ctrs[l.InstanceGUID]
			Expect(ok).To(BeTrue(), "no container for instance %s", l.InstanceGUID)
			Expect(c.State).To(Equal(executor.StateRunning))
			Expect(l.Address).To(Equal(c.ExternalIP))
			Expect(l.InstanceAddress).To(Equal(c.InternalIP))
			Expect(l.Ports).To(HaveLen(1))
			Expect(l.Ports[0].ContainerPort).To(BeEquivalentTo(appPort))
			Expect(l.Ports[0].HostPort).To(BeEquivalentTo(c.Ports[0].HostPort))
			// The net info BBS holds reaches this very instance.
			body, err := get(appURL(l) + "/")
			Expect(err).NotTo(HaveOccurred())
			Expect(body).To(ContainSubstring("hello from " + l.InstanceGUID))
			Expect(body).To(ContainSubstring(fmt.Sprintf("(index %d)", l.Index)))
		}
		Expect(indexes).To(Equal(map[int]bool{0: true, 1: true}))

		_, err = k.bbsctl(`{"instances": 1}`, "update-lrp", guid)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() ([]actualLRP, error) { return k.actualLRPs(guid) }, waitLong, time.Second).Should(
			ConsistOf(HaveField("Index", 0)))
		Eventually(func() int { return len(diegoContainers(agent, guid)) }, waitLong, time.Second).Should(Equal(1))
		left := diegoContainers(agent, guid)[0]
		Expect(left.Tags["diego.index"]).To(Equal("0"))
		Expect(left.State).To(Equal(executor.StateRunning))

		removeAndWaitGone(k, agent, guid)
		// Nothing of the two instances is left on the host either.
		Eventually(func(g Gomega) {
			inv, err := testagent.TakeInventory(agent)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(inv.Empty()).To(BeEmpty())
		}, 15*time.Second, 500*time.Millisecond).Should(Succeed())
	})

	It("re-registers a running instance's routes when the desired LRP's routes and metric tags change", func() {
		const guid = "it-update"
		rec := recordRoutes(agent.NATSURL())
		lrps := runOne(k, guid)
		ig := lrps[0].InstanceGUID
		Eventually(func() bool { return rec.registered(ig, guid+".example.com", "source_id", guid) }, 30*time.Second,
			200*time.Millisecond).Should(BeTrue())

		// Routes reach the cell through BBS's event stream, metric tags
		// through BBS's PUT /v2/lrps/... to the rep API.
		_, err := k.bbsctl(`{"routes": {"cf-router": [{"hostnames": ["renamed.example.com"], "port": 8080}]},
			"metric_tags": {"source_id": {"static": "it-update-v2"}}}`, "update-lrp", guid)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() bool { return rec.registered(ig, "renamed.example.com", "source_id", "it-update-v2") }, 30*time.Second,
			200*time.Millisecond).Should(BeTrue())
		Eventually(func() int { return rec.first("router.unregister", ig, guid+".example.com") }, 30*time.Second,
			200*time.Millisecond).Should(BeNumerically(">=", 0))
		Expect(rec.registered(ig, guid+".example.com", "", "")).To(BeFalse())
		// The same instance: nothing restarted.
		now, err := k.actualLRPs(guid)
		Expect(err).NotTo(HaveOccurred())
		Expect(now).To(ConsistOf(And(HaveField("InstanceGUID", ig), HaveField("State", "RUNNING"))))
		Expect(diegoContainers(agent, guid)[0].Routes[0].Hostnames).To(Equal([]string{"renamed.example.com"}))
	})

	It("shows operators the Diego view: state, explain and events name the instance, metrics count BBS calls", func() {
		const guid = "it-ops"
		ig := runOne(k, guid)[0].InstanceGUID
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := agent.Client.State(c)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Diego).NotTo(BeNil())
		Expect(st.Diego.PresenceHeld).To(BeTrue())
		Expect(st.Diego.BBSReachable).To(BeTrue())
		Expect(st.Diego.LRPs["RUNNING"]).To(BeNumerically(">=", 1))

		cellctl := func(args ...string) string {
			out, err := exec.Command(filepath.Join(binDir(), "cellctl"), append([]string{"-api", agent.API}, args...)...).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(out))
			return string(out)
		}
		Expect(cellctl("state")).To(MatchRegexp(`diego\s+presence held\s+bbs reachable`))
		Expect(cellctl("explain", ig)).To(ContainSubstring("diego lrp: process guid " + guid + ", index 0, instance guid " + ig))
		Expect(cellctl("events")).To(ContainSubstring("[diego lrp: process guid " + guid + ", index 0, instance guid " + ig + "]"))

		metrics, err := get(agent.API + "/metrics")
		Expect(err).NotTo(HaveOccurred())
		Expect(metrics).To(MatchRegexp(`cellagent_diego_bbs_calls_total\{route="/v1/actual_lrps/start.r1"\} [1-9]`))
		Expect(metrics).To(MatchRegexp(`cellagent_diego_bbs_calls_total\{route="/v1/actual_lrps/claim"\} [1-9]`))
	})

	It("refuses a desired LRP it cannot run fully and starts nothing", func() {
		const guid = "it-unsupported"
		lrp := strings.Replace(desiredLRP(guid, 1), `"instances"`, `"privileged": true, "instances"`, 1)
		_, err := k.bbsctl(lrp, "desire-lrp")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _, _ = k.bbsctl("", "remove-lrp", guid) })
		Eventually(func() ([]actualLRP, error) { return k.actualLRPs(guid) }, waitLong, time.Second).Should(
			ConsistOf(And(HaveField("State", "UNCLAIMED"), HaveField("PlacementError", Not(BeEmpty())))))
		Expect(diegoContainers(agent, guid)).To(BeEmpty())
		Expect(agent.LogText()).To(ContainSubstring("privileged: this cell's allow_privileged is false"))
	})

	It("runs a desired LRP with egress rules, which the instance's network filter holds", func() {
		const guid = "it-egress"
		lrp := strings.Replace(desiredLRP(guid, 1), `"instances"`, `"egress_rules": [
 {"protocol": "tcp", "destinations": ["10.9.8.7"], "ports": [443, 8443], "log": true},
 {"protocol": "udp", "destinations": ["10.9.0.0/16"], "port_range": {"start": 53, "end": 60}},
 {"protocol": "icmp", "destinations": ["10.9.8.7"], "icmp_info": {"type": -1, "code": -1}}], "instances"`, 1)
		_, err := k.bbsctl(lrp, "desire-lrp")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _, _ = k.bbsctl("", "remove-lrp", guid) })
		lrps, err := k.waitActual(guid, "RUNNING", 1, waitLong)
		Expect(err).NotTo(HaveOccurred())

		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		filter, err := agent.Client.NetworkFilter(c, lrps[0].InstanceGUID)
		Expect(err).NotTo(HaveOccurred())
		Expect(filter.EgressRules).To(Equal([]executor.EgressRule{
			{Protocol: "tcp", Destinations: []string{"10.9.8.7"}, Ports: "443,8443", Log: true},
			{Protocol: "udp", Destinations: []string{"10.9.0.0-10.9.255.255"}, Ports: "53-60"},
			{Protocol: "icmp", Destinations: []string{"10.9.8.7"}},
		}))
	})

	It("restarts an instance that crashes, counting the crash", func() {
		const guid = "it-crash"
		lrps := runOne(k, guid)
		first := lrps[0]
		body, err := get(appURL(first) + "/exit?code=3")
		Expect(err).NotTo(HaveOccurred())
		Expect(body).To(ContainSubstring("exiting with 3"))

		Eventually(func() ([]actualLRP, error) { return k.actualLRPs(guid) }, waitLong, time.Second).Should(
			ConsistOf(And(HaveField("State", "RUNNING"), HaveField("CrashCount", 1),
				HaveField("CrashReason", ContainSubstring("app exited with status 3")),
				HaveField("InstanceGUID", Not(Equal(first.InstanceGUID))))))
		Eventually(func() []executor.Container { return diegoContainers(agent, guid) }, waitLong, time.Second).Should(
			ConsistOf(HaveField("State", executor.StateRunning)))
	})

	It("keeps LRPs running, with their actual LRP records, across kill -9 of the agent", func() {
		const guid = "it-kill9"
		lrps := runOne(k, guid)
		before := lrps[0]

		agent.Kill9()
		body, err := get(appURL(before) + "/")
		Expect(err).NotTo(HaveOccurred(), "the app must keep serving while the agent is down")
		Expect(body).To(ContainSubstring("hello from " + before.InstanceGUID))
		Expect(agent.Start()).To(Succeed())

		// The restarted cell reports the adopted instance again: still the
		// same instance, never restarted, and BBS never replaced it.
		lrps, err = k.waitActual(guid, "RUNNING", 1, waitLong)
		Expect(err).NotTo(HaveOccurred())
		Expect(lrps[0].InstanceGUID).To(Equal(before.InstanceGUID))
		Expect(lrps[0].CrashCount).To(BeZero())
		Expect(lrps[0].Ports).To(Equal(before.Ports))
		ctrs := diegoContainers(agent, guid)
		Expect(ctrs).To(ConsistOf(And(HaveField("GUID", before.InstanceGUID), HaveField("State", executor.StateRunning))))
		// Convergence runs every 10s; two rounds later nothing has changed.
		Consistently(func() ([]actualLRP, error) { return k.actualLRPs(guid) }, 25*time.Second, 5*time.Second).Should(
			ConsistOf(And(HaveField("InstanceGUID", before.InstanceGUID), HaveField("State", "RUNNING"))))
	})

	It("reconciles an actual LRP whose container vanished behind the cell's back: BBS's record is removed and the LRP runs again", func() {
		const guid = "it-reconcile"
		before := runOne(k, guid)[0]

		// While the agent is down its record of the container is lost: the
		// restarted store removes the container as an orphan, and no event
		// tells the cell. Only the periodic reconcile with BBS finds the
		// RUNNING record without a container.
		agent.Kill9()
		Expect(os.Remove(filepath.Join(agent.Config.DataDir, "containers", before.InstanceGUID+".json"))).To(Succeed())
		Expect(agent.Start()).To(Succeed())
		Eventually(func() []executor.Container { return diegoContainers(agent, guid) }, 30*time.Second, time.Second).ShouldNot(
			ContainElement(HaveField("GUID", before.InstanceGUID)))

		Eventually(func() ([]actualLRP, error) { return k.actualLRPs(guid) }, waitLong, time.Second).Should(
			ConsistOf(And(HaveField("State", "RUNNING"), HaveField("Index", before.Index),
				HaveField("InstanceGUID", Not(Equal(before.InstanceGUID))))))
		Expect(agent.LogText()).To(ContainSubstring("removed-residual-actual-lrp"))
		Expect(diegoContainers(agent, guid)).To(ConsistOf(HaveField("State", executor.StateRunning)))
	})

	It("gets its presence back after Locket is unreachable for 30s, and loses no instance", func() {
		const guid = "it-locket-down"
		before := runOne(k, guid)[0]
		pid, err := strconv.Atoi(k.env["LOCKET_PID"])
		Expect(err).NotTo(HaveOccurred())
		locket, err := os.FindProcess(pid)
		Expect(err).NotTo(HaveOccurred())
		// SIGSTOP: Locket keeps its port and its PID (for stop) but answers
		// nothing, as an unreachable Locket does.
		Expect(locket.Signal(syscall.SIGSTOP)).To(Succeed())
		resumed := false
		resume := func() {
			if !resumed {
				Expect(locket.Signal(syscall.SIGCONT)).To(Succeed())
				resumed = true
			}
		}
		DeferCleanup(resume)
		time.Sleep(30 * time.Second) // the outage the issue asks for, not a timing assertion
		resume()
		Expect(k.relaunchExited("bbs", "auctioneer")).To(Succeed())

		Eventually(k.cells, waitLong, time.Second).Should(ConsistOf(HaveField("CellID", cellID)))
		// Whatever BBS made of the outage (suspect, replacement), it settles
		// on one running instance and the cell on one container.
		Eventually(func() ([]actualLRP, error) { return k.actualLRPs(guid) }, waitLong, time.Second).Should(
			ConsistOf(And(HaveField("State", "RUNNING"), HaveField("Presence", "ORDINARY"))))
		Eventually(func() []executor.Container { return diegoContainers(agent, guid) }, waitLong, time.Second).Should(
			ConsistOf(HaveField("State", executor.StateRunning)))
		lrps, err := k.actualLRPs(guid)
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("instance before the outage %s, after %s\n", before.InstanceGUID, lrps[0].InstanceGUID)
	})

	measure(func() *kit { return k }, func() *testagent.Agent { return agent })
	downloadSpecs(func() *kit { return k }, func() *testagent.Agent { return agent })

	DescribeTable("runs a task to completion and completes it in BBS with how it ended",
		func(guid, script, resultFile string, failed bool, reason, result string) {
			task := fmt.Sprintf(`{"task_guid": %q, "domain": "cellagent-it", "rootfs": "preloaded:%s",
 "memory_mb": 32, "disk_mb": 32, "result_file": %q, "metric_tags": {"source_id": {"static": %q}},
 "action": {"run": {"path": "/bin/sh", "args": ["-c", %q], "user": "vcap"}}}`, guid, stack, resultFile, guid, script)
			got := k.runTask(task, guid)
			Expect(got.Failed).To(Equal(failed))
			Expect(got.FailureReason).To(ContainSubstring(reason))
			Expect(got.Result).To(Equal(result))
			Eventually(func() ([]executor.Container, error) { return agent.Client.List(context.Background()) },
				waitLong, time.Second).ShouldNot(ContainElement(HaveField("GUID", guid)))
		},
		Entry("exit 0 succeeds", "it-task-ok", "echo done", "", false, "", ""),
		Entry("exit 3 fails with the exit status", "it-task-fail", "exit 3", "", true, "app exited with status 3", ""),
		Entry("its result file becomes the task's result", "it-task-result", "echo hi > /tmp/r", "/tmp/r", false, "", "hi\n"),
		Entry("a result file it did not write fails it", "it-task-noresult", "true", "/tmp/r", true,
			"failed to fetch result: /tmp/r: no such file in container it-task-noresult", ""),
		Entry("a result file that is a link out of its filesystem fails it, nothing of the host read", "it-task-escape",
			"ln -s /etc/hostname /tmp/r", "/tmp/r", true, "failed to fetch result", ""),
	)

	It("releases its presence when it stops", func() {
		// The earlier specs' LRPs are removed by now; their containers go
		// before the agent does, so that nothing is left on the host.
		Eventually(func() ([]executor.Container, error) { return agent.Client.List(context.Background()) },
			waitLong, time.Second).Should(BeEmpty())
		Expect(agent.Stop()).To(Succeed())
		Expect(agent.LogText()).To(ContainSubstring("released-presence"))
		cells, err := k.cells()
		Expect(err).NotTo(HaveOccurred())
		Expect(cells).To(BeEmpty())
	})
})

var _ = Describe("cellagent as a Diego cell with mutual TLS on the rep API (REP_TLS=1) and the TLS proxy", Ordered, func() {
	var (
		k     *kit
		agent *testagent.Agent
	)

	BeforeAll(func() {
		k, agent = startCell("diegocelltls", cellOptions{repTLS: true, proxy: true}, cellNetwork{name: "cellagentdiegotls", bridge: "cadiegotls0",
			subnet: "10.254.171.0/24", ports: "47200-47299"})
	})

	It("is placed on, runs and stops an LRP when BBS and the auctioneer call it over mutual TLS", func() {
		const guid = "it-tls-app"
		lrps := runOne(k, guid)
		Expect(lrps[0].CellID).To(Equal("diegocelltls"))
		// The net info carries the proxy's ports, as the container has them.
		ctrs := diegoContainers(agent, guid)
		Expect(ctrs).To(HaveLen(1))
		Expect(ctrs[0].Ports[0].HostTLSProxyPort).NotTo(BeZero())
		Expect(lrps[0].Ports).To(Equal([]portMapping{{ContainerPort: appPort, HostPort: uint32(ctrs[0].Ports[0].HostPort),
			ContainerTLSProxyPort: uint32(ctrs[0].Ports[0].ContainerTLSProxyPort), HostTLSProxyPort: uint32(ctrs[0].Ports[0].HostTLSProxyPort)}}))
		conn, err := tls.Dial("tcp", net.JoinHostPort(lrps[0].Address, strconv.Itoa(int(lrps[0].Ports[0].HostTLSProxyPort))),
			&tls.Config{InsecureSkipVerify: true}) // the instance identity CA is the agent's dev CA; only reachability is checked here
		Expect(err).NotTo(HaveOccurred())
		Expect(conn.ConnectionState().PeerCertificates[0].Subject.CommonName).To(Equal(lrps[0].InstanceGUID))
		conn.Close()
		body, err := get(appURL(lrps[0]) + "/")
		Expect(err).NotTo(HaveOccurred())
		Expect(body).To(ContainSubstring("hello from " + lrps[0].InstanceGUID))

		removeAndWaitGone(k, agent, guid)
	})

	It("with a second cell, has the auctioneer spread instances across both", func() {
		startAgent(k, "diegocelltls2", cellOptions{repTLS: true, proxy: true}, cellNetwork{name: "cellagentdiegotwo",
			bridge: "cadiegotwo0", subnet: "10.254.172.0/24", ports: "47300-47399"})
		Eventually(k.cells, waitLong, time.Second).Should(HaveLen(2))
		const guid = "it-spread"
		_, err := k.bbsctl(desiredLRP(guid, 2), "desire-lrp")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _, _ = k.bbsctl("", "remove-lrp", guid) })
		lrps, err := k.waitActual(guid, "RUNNING", 2, waitLong)
		Expect(err).NotTo(HaveOccurred())
		Expect(lrps).To(ConsistOf(HaveField("CellID", "diegocelltls"), HaveField("CellID", "diegocelltls2")))
		for _, l := range lrps {
			body, err := get(appURL(l) + "/")
			Expect(err).NotTo(HaveOccurred())
			Expect(body).To(ContainSubstring("hello from " + l.InstanceGUID))
		}
	})

	It("answers rep API calls only with a client certificate signed by its CA", func() {
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(k.env["CELL_CA"])
		Expect(err).NotTo(HaveOccurred())
		Expect(pool.AppendCertsFromPEM(pem)).To(BeTrue())
		cert, err := tls.LoadX509KeyPair(k.env["BBS_CERT"], k.env["BBS_KEY"])
		Expect(err).NotTo(HaveOccurred())
		call := func(certs []tls.Certificate) (int, error) {
			c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
			resp, err := c.Get(agent.Config.Diego.Rep.URL + "/ping")
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}
		Expect(call([]tls.Certificate{cert})).To(Equal(http.StatusOK))
		_, err = call(nil)
		Expect(err).To(HaveOccurred())
	})
})
