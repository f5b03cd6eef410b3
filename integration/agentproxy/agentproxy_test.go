package agentproxy_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"

	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

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
		Check:     &executor.Check{HTTP: &executor.HTTPCheck{Port: 8080, Path: "/"}},
		StopGrace: executor.Duration(3 * time.Second),
	}
}

// routerTLS is what Gorouter would use towards guid.
func routerTLS(agent *testagent.Agent, serverName string) *tls.Config {
	ca, err := os.ReadFile(filepath.Join(agent.Config.DataDir, "identity", "ca.crt"))
	Expect(err).NotTo(HaveOccurred())
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM(ca)).To(BeTrue())
	return &tls.Config{RootCAs: pool, ServerName: serverName}
}

func tlsGet(addr string, cfg *tls.Config) (string, error) {
	client := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newCA(name string) testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	Expect(err).NotTo(HaveOccurred())
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca testCA) client(san string) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: san},
		DNSNames: []string{san}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	Expect(err).NotTo(HaveOccurred())
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

var _ = Describe("the proxy beside the app", func() {
	var (
		agent *testagent.Agent
		ctx   = context.Background()
	)

	start := func(modify func(*config.Config)) {
		var err error
		agent, err = testagent.New(GinkgoT().TempDir(), fmt.Sprintf("px%d", time.Now().UnixNano()%100000), func(c *config.Config) {
			c.Network.Mode = "bridge"
			c.Network.Name = "cellagentpx"
			c.Network.Bridge = "cellagentpx0"
			c.Network.Subnet = "10.254.103.0/24"
			c.Network.HostPortRange = "46300-46399"
			c.Proxy.Enabled = true
			if modify != nil {
				modify(c)
			}
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(agent.Start()).To(Succeed())
		DeferCleanup(func() {
			agent.Cleanup()
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Println(agent.LogText())
			}
		})
	}

	It("serves the app over TLS with the instance identity; the wrong ServerName fails; the memory limit includes the proxy", func() {
		start(nil)
		_, err := agent.Client.AllocateAndRun(ctx, "px-1", request())
		Expect(err).NotTo(HaveOccurred())
		c, err := agent.WaitState("px-1", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() bool { c, _ = agent.Client.Get(ctx, "px-1"); return c.Routable }, 15*time.Second).Should(BeTrue())
		Expect(c.Ports).To(HaveLen(1))
		Expect(c.Ports[0].ContainerTLSProxyPort).To(Equal(uint16(61001)))
		addr := fmt.Sprintf("%s:%d", c.ExternalIP, c.Ports[0].HostTLSProxyPort)
		Expect(tlsGet(addr, routerTLS(agent, "px-1"))).To(ContainSubstring("hello from px-1"))
		_, err = tlsGet(addr, routerTLS(agent, "px-other"))
		Expect(err).To(MatchError(ContainSubstring("px-other")))

		By("the cgroup limit is requested memory plus the proxy overhead (cellproxy's default: 16 MB)")
		const overhead = 16
		Expect(agent.Config.Proxy.MemoryOverheadMB).To(Equal(overhead))
		Expect(c.MemoryLimitBytes).To(Equal(uint64(64+overhead) << 20))
		limit, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", agent.Config.Containerd.Namespace, "px-1", "memory.limit_in_bytes"))
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.TrimSpace(string(limit))).To(Equal(strconv.Itoa((64 + overhead) << 20)))
		st, err := agent.Client.State(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.ProxyMemoryOverheadMB).To(Equal(overhead))
		Expect(st.Total.MemoryMB - st.Available.MemoryMB).To(Equal(64 + overhead))
		Expect(c.Memory).NotTo(BeNil())
		Expect(c.Memory.ProxyBytes).To(BeNumerically(">", 0))

		By("logs carry the app's and the proxy's output, tagged, and each alone on request")
		readLogs := func(source string) string {
			rc, err := agent.Client.Logs(ctx, "px-1", executor.LogOptions{Source: source})
			Expect(err).NotTo(HaveOccurred())
			defer rc.Close()
			b, err := io.ReadAll(rc)
			Expect(err).NotTo(HaveOccurred())
			return string(b)
		}
		all := readLogs("")
		Expect(all).To(MatchRegexp(`(?m)^\[app\] demo-app listening`))
		Expect(all).To(MatchRegexp(`(?m)^\[proxy\] .*cellproxy\.proxy\.run\.ready`))
		Expect(readLogs(executor.LogSourceApp)).To(MatchRegexp(`(?m)^demo-app listening`))
		proxyOnly := readLogs(executor.LogSourceProxy)
		Expect(proxyOnly).To(ContainSubstring("cellproxy.proxy.run.ready"))
		Expect(proxyOnly).NotTo(ContainSubstring("demo-app"))

		By("port 61443 and proxy ports are refused in requests")
		for _, p := range []uint16{61443, 61001} {
			req := request()
			req.Ports = []uint16{8080, p}
			_, err := agent.Client.AllocateAndRun(ctx, "px-bad", req)
			Expect(err).To(MatchError(executor.ErrInvalidRequest))
		}
	})

	It("reports an app that exits at once by its exit status, and runs no proxy beside an app without ports", func() {
		start(nil)
		exit3 := request()
		exit3.Process = executor.Process{Path: "/bin/sh", Args: []string{"-c", "exit 3"}}
		exit3.Ports, exit3.Check = nil, nil

		By("an app without ports that exits at once")
		_, err := agent.Client.AllocateAndRun(ctx, "px-exit", exit3)
		Expect(err).NotTo(HaveOccurred())
		c, err := agent.WaitState("px-exit", executor.StateCompleted, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.RunResult.Failed).To(BeTrue())
		Expect(c.RunResult.FailureReason).To(MatchRegexp(`^app exited with status 3( before it was ready)?$`))
		Expect(c.RunResult.ExitStatus).To(HaveValue(Equal(3)))
		Expect(c.MemoryLimitBytes).To(Equal(uint64(64) << 20))
		Expect(filepath.Join(agent.Config.DataDir, "proxy", "px-exit")).NotTo(BeAnExistingFile(), "no proxy files")
		Expect(filepath.Join(agent.Config.DataDir, "logs", "px-exit", "proxy.log")).NotTo(BeAnExistingFile(), "no proxy ran")
		Expect(agent.LogText()).NotTo(ContainSubstring("start proxy"))

		By("an app with ports that exits before its proxy can start")
		withPorts := exit3
		withPorts.Ports = []uint16{8080}
		_, err = agent.Client.AllocateAndRun(ctx, "px-exit-ports", withPorts)
		Expect(err).NotTo(HaveOccurred())
		c, err = agent.WaitState("px-exit-ports", executor.StateCompleted, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.RunResult.FailureReason).To(MatchRegexp(`^app exited with status 3( before it was ready)?$`))
		Expect(c.RunResult.ExitStatus).To(HaveValue(Equal(3)))

		By("a running app without ports: no proxy process, no proxy memory in its limit or the cell's accounting")
		Expect(agent.Client.Delete(ctx, "px-exit")).To(Succeed())
		Expect(agent.Client.Delete(ctx, "px-exit-ports")).To(Succeed())
		sleeper := exit3
		sleeper.Process = executor.Process{Path: "/bin/sleep", Args: []string{"600"}}
		_, err = agent.Client.AllocateAndRun(ctx, "px-noport", sleeper)
		Expect(err).NotTo(HaveOccurred())
		c, err = agent.WaitState("px-noport", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Ports).To(BeEmpty())
		Expect(c.MemoryLimitBytes).To(Equal(uint64(64) << 20))
		limit, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", agent.Config.Containerd.Namespace, "px-noport", "memory.limit_in_bytes"))
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.TrimSpace(string(limit))).To(Equal(strconv.Itoa(64 << 20)))
		st, err := agent.Client.State(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Total.MemoryMB - st.Available.MemoryMB).To(Equal(64))
		out, err := exec.Command("ctr", "--address", testagent.Socket(), "-n", agent.Config.Containerd.Namespace, "tasks", "ps", "px-noport").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).NotTo(ContainSubstring("cellagent-proxy"))
		Expect(strings.Count(strings.TrimSpace(string(out)), "\n")).To(Equal(1), "the app's process alone:\n%s", out)
		Expect(filepath.Join(agent.Config.DataDir, "proxy", "px-noport")).NotTo(BeAnExistingFile())
		Expect(agent.Client.Stop(ctx, "px-noport")).To(Succeed())
	})

	It("reaches an app bound only to CF_INSTANCE_INTERNAL_IP, as Diego's Envoy does, also on the c2c port", func() {
		start(nil)
		req := request()
		req.Process.Env = []string{"BIND_INTERNAL_IP=1"}
		req.InternalRoutes = []executor.InternalRoute{{Hostname: "app.apps.internal"}}
		_, err := agent.Client.AllocateAndRun(ctx, "px-ip", req)
		Expect(err).NotTo(HaveOccurred())
		c, err := agent.WaitState("px-ip", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() bool { c, _ = agent.Client.Get(ctx, "px-ip"); return c.Routable }, 15*time.Second).Should(BeTrue())
		rc, err := agent.Client.Logs(ctx, "px-ip", executor.LogOptions{Source: executor.LogSourceApp})
		Expect(err).NotTo(HaveOccurred())
		logs, err := io.ReadAll(rc)
		rc.Close()
		Expect(err).NotTo(HaveOccurred())
		Expect(string(logs)).To(ContainSubstring("demo-app listening on " + c.InternalIP + ":8080"))
		addr := fmt.Sprintf("%s:%d", c.ExternalIP, c.Ports[0].HostTLSProxyPort)
		Expect(tlsGet(addr, routerTLS(agent, "px-ip"))).To(ContainSubstring("hello from px-ip"))

		By("Diego's c2c listener: 61443 on the container IP, a certificate for the internal route")
		c2c := fmt.Sprintf("%s:61443", c.InternalIP)
		Expect(tlsGet(c2c, routerTLS(agent, "app.apps.internal"))).To(ContainSubstring("hello from px-ip"))
		_, err = tlsGet(c2c, routerTLS(agent, "other.apps.internal"))
		Expect(err).To(MatchError(ContainSubstring("other.apps.internal")))
	})

	It("lets a router that missed the unregister retry elsewhere while an instance stops: the proxy presents an invalid certificate before SIGTERM", func() {
		start(nil)
		addrs := map[string]string{}
		for _, guid := range []string{"px-a", "px-b"} {
			req := request()
			// The app keeps serving for 2s after SIGTERM, as a graceful app does.
			req.Process.Env = []string{"STOP_DELAY=2s"}
			_, err := agent.Client.AllocateAndRun(ctx, guid, req)
			Expect(err).NotTo(HaveOccurred())
			c, err := agent.WaitState(guid, executor.StateRunning, 30*time.Second)
			Expect(err).NotTo(HaveOccurred())
			Eventually(func() bool { c, _ = agent.Client.Get(ctx, guid); return c.Routable }, 15*time.Second).Should(BeTrue())
			addrs[guid] = fmt.Sprintf("%s:%d", c.ExternalIP, c.Ports[0].HostTLSProxyPort)
		}

		// Gorouter's rule: a dial or handshake failure is retried on another
		// instance; a failure after the request was sent is a 502.
		var (
			sent, failed, retried, certRefused atomic.Int64
			lastErr                            atomic.Value
			stop                               = make(chan struct{})
			done                               = make(chan struct{})
		)
		send := func(guid string) error {
			d := &net.Dialer{Timeout: 2 * time.Second}
			conn, err := tls.DialWithDialer(d, "tcp", addrs[guid], routerTLS(agent, guid))
			if err != nil {
				return &handshakeError{err}
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			sent.Add(1)
			if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"); err != nil {
				return err
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		}
		go func() {
			defer close(done)
			for i := 0; i < 20000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				first, other := "px-a", "px-b"
				if i%2 == 1 {
					first, other = other, first
				}
				err := send(first)
				var he *handshakeError
				if errors.As(err, &he) {
					var cve *tls.CertificateVerificationError
					if first == "px-a" && errors.As(he.err, &cve) {
						certRefused.Add(1)
					}
					retried.Add(1)
					err = send(other)
				}
				if err != nil {
					failed.Add(1)
					lastErr.Store(err)
				}
			}
		}()
		Eventually(sent.Load).Should(BeNumerically(">", 20))
		Expect(agent.Client.Stop(ctx, "px-a")).To(Succeed())
		_, err := agent.WaitState("px-a", executor.StateCompleted, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		n := sent.Load()
		Eventually(sent.Load).Should(BeNumerically(">", n+20), "requests go on to px-b")
		close(stop)
		<-done

		Expect(failed.Load()).To(BeZero(), "no request failed after it was sent; last error: %v", lastErr.Load())
		Expect(certRefused.Load()).To(BeNumerically(">", 0), "px-a's proxy refused handshakes with an invalid certificate before its app stopped")
		Expect(retried.Load()).To(BeNumerically(">=", certRefused.Load()))
		GinkgoWriter.Printf("requests sent %d, retried %d (invalid certificate %d), failed %d\n", sent.Load(), retried.Load(), certRefused.Load(), failed.Load())
	})

	// As the suite runs (proxy.init's default or CELLAGENT_PROXY_INIT),
	// with the proxy as a runc exec, which proxy.init: false keeps, and
	// after a kill -9 restart of the agent, which adopts the proxy's
	// supervision.
	killedProxy := func(modify func(*config.Config), kill9 bool) {
		start(modify)
		_, err := agent.Client.AllocateAndRun(ctx, "px-kill", request())
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("px-kill", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() bool { c, _ := agent.Client.Get(ctx, "px-kill"); return c.Routable }, 15*time.Second).Should(BeTrue())
		if kill9 {
			agent.Kill9()
			Expect(agent.Start()).To(Succeed())
			Eventually(func() bool { c, _ := agent.Client.Get(ctx, "px-kill"); return c.Routable }, 15*time.Second).Should(BeTrue(), "adopted and routable")
		}
		evCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		evs, err := agent.Client.Events(evCtx, agent.LastSeq(ctx))
		Expect(err).NotTo(HaveOccurred())

		pid := proxyPid(agent, "px-kill")
		Expect(exec.Command("kill", "-9", pid).Run()).To(Succeed())
		Eventually(evs, 10*time.Second).Should(Receive(HaveField("Type", executor.EventProxyRestarted)))
		Eventually(func() string { return proxyPid(agent, "px-kill") }, 20*time.Second).ShouldNot(Or(Equal(pid), BeEmpty()))
		Eventually(func() bool { c, _ := agent.Client.Get(ctx, "px-kill"); return c.Routable }, 20*time.Second).Should(BeTrue())
		c, _ := agent.Client.Get(ctx, "px-kill")
		Expect(tlsGet(fmt.Sprintf("%s:%d", c.ExternalIP, c.Ports[0].HostTLSProxyPort), routerTLS(agent, "px-kill"))).To(ContainSubstring("px-kill"))
	}
	It("brings a killed proxy back and makes the instance routable again", func() { killedProxy(nil, false) })
	It("brings a killed proxy back after a kill -9 restart of the agent", func() { killedProxy(nil, true) })
	It("brings a killed proxy back without proxy.init (its runc exec)", func() {
		killedProxy(func(c *config.Config) {
			off := false
			c.Proxy.Init = &off
		}, false)
		ps, err := agent.ContainerProcs("px-kill")
		Expect(err).NotTo(HaveOccurred())
		Expect(ps.Init).To(BeNil(), "the app is the task's process")
	})

	// Issue 16 follow-up: cellinit runs the checks in the container and
	// keeps the interval it started with. After a kill -9 restart with
	// health monitoring off, its last report is all that says the app is
	// sick: the adoption must not route the instance, and its report that
	// the app is well again must route it.
	It("does not route an adopted instance whose app fails its check in the container, after a kill -9 restart with health monitoring off, until the check passes", func() {
		start(func(c *config.Config) {
			on := true
			c.Proxy.Init = &on
			c.HealthInterval = config.Duration(time.Second)
		})
		_, err := agent.Client.AllocateAndRun(ctx, "px-sick", request())
		Expect(err).NotTo(HaveOccurred())
		var c executor.Container
		Eventually(func() bool { c, _ = agent.Client.Get(ctx, "px-sick"); return c.Routable }, 30*time.Second).Should(BeTrue())
		appURL := fmt.Sprintf("http://%s:8080", c.InternalIP)
		resp, err := http.Get(appURL + "/sick")
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Eventually(func() bool { c, _ := agent.Client.Get(ctx, "px-sick"); return c.Routable }, 15*time.Second).Should(BeFalse())

		agent.Kill9()
		Expect(agent.Reconfigure(func(c *config.Config) { c.HealthInterval = 0 })).To(Succeed())
		Expect(agent.Start()).To(Succeed())
		sick := "not ready: http check on " + appURL + "/: status 503"
		var e executor.Explanation
		Eventually(func() []string {
			e, _ = agent.Client.Explain(ctx, "px-sick")
			var msgs []string
			for _, ev := range e.Timeline {
				if ev.Type == executor.EventContainerRoutable {
					msgs = append(msgs, ev.Message)
				}
			}
			return msgs
		}, 15*time.Second).Should(ContainElement(sick))
		Expect(e.TimelineComplete).To(BeTrue())
		Expect(e.Timeline).To(ContainElement(HaveField("Type", executor.EventContainerAdopted)))
		Expect(e.Routable).To(BeFalse())
		for _, ev := range e.Timeline {
			Expect(ev.Message).NotTo(HavePrefix("routable:"), "routed after the restart while its check failed")
		}

		By("its proxy killed and restarted by cellinit, it answers again: still not routed while the app's check fails")
		evCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		evs, err := agent.Client.Events(evCtx, agent.LastSeq(ctx))
		Expect(err).NotTo(HaveOccurred())
		pid := proxyPid(agent, "px-sick")
		Expect(exec.Command("kill", "-9", pid).Run()).To(Succeed())
		Eventually(evs, 10*time.Second).Should(Receive(HaveField("Type", executor.EventProxyRestarted)))
		Eventually(func() string { return proxyPid(agent, "px-sick") }, 20*time.Second).ShouldNot(Or(Equal(pid), BeEmpty()))
		Eventually(func() error {
			_, err := tlsGet(fmt.Sprintf("%s:%d", c.ExternalIP, c.Ports[0].HostTLSProxyPort), routerTLS(agent, "px-sick"))
			return err
		}, 20*time.Second).Should(Succeed(), "the restarted proxy serves (and forwards to the sick app)")
		Consistently(func() bool { c, _ := agent.Client.Get(ctx, "px-sick"); return c.Routable }, 3*time.Second).Should(BeFalse(),
			"routed again by its proxy's answer while its app's check fails")

		resp, err = http.Get(appURL + "/well")
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Eventually(func() bool { c, _ := agent.Client.Get(ctx, "px-sick"); return c.Routable }, 15*time.Second).Should(BeTrue(),
			"routed once cellinit reports the check passing (the agent runs no health rounds)")
		Expect(tlsGet(fmt.Sprintf("%s:%d", c.ExternalIP, c.Ports[0].HostTLSProxyPort), routerTLS(agent, "px-sick"))).To(ContainSubstring("px-sick"))
	})

	It("reports an app that cannot be started as a start failure, and an app's own exit 127 as its exit (with or without proxy.init)", func() {
		start(nil)
		req := request()
		req.Process.Path = "/no/such/app"
		_, err := agent.Client.AllocateAndRun(ctx, "px-noexec", req)
		Expect(err).NotTo(HaveOccurred())
		c, err := agent.WaitState("px-noexec", executor.StateCompleted, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.RunResult.Failed).To(BeTrue())
		Expect(c.RunResult.FailureCode).To(Equal(executor.FailureOther), c.RunResult.FailureReason)
		Expect(c.RunResult.FailureReason).To(ContainSubstring("task px-noexec"))
		Expect(c.RunResult.FailureReason).To(ContainSubstring("/no/such/app"))
		Expect(c.RunResult.ExitStatus).To(BeNil(), "the app never ran")

		req = request()
		req.Process = executor.Process{Path: "/bin/sh", Args: []string{"-c", "exit 127"}}
		_, err = agent.Client.AllocateAndRun(ctx, "px-exit127", req)
		Expect(err).NotTo(HaveOccurred())
		c, err = agent.WaitState("px-exit127", executor.StateCompleted, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.RunResult.FailureCode).To(Equal(executor.FailureAppExited), c.RunResult.FailureReason)
		Expect(c.RunResult.ExitStatus).To(HaveValue(Equal(127)))
	})

	It("requires client certificates from the trusted CA when configured", func() {
		trusted, other := newCA("orchestrator"), newCA("stranger")
		caFile := filepath.Join(GinkgoT().TempDir(), "trusted.pem")
		Expect(os.WriteFile(caFile, trusted.certPEM, 0o644)).To(Succeed())
		start(func(c *config.Config) {
			c.Proxy.RequireClientCerts = true
			c.Proxy.TrustedCA = caFile
			c.Proxy.VerifySAN = []string{"gorouter.service.internal"}
		})
		_, err := agent.Client.AllocateAndRun(ctx, "px-mtls", request())
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("px-mtls", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		c, _ := agent.Client.Get(ctx, "px-mtls")
		Eventually(func() bool { c, _ = agent.Client.Get(ctx, "px-mtls"); return c.Routable }, 15*time.Second).Should(BeTrue())
		addr := fmt.Sprintf("%s:%d", c.ExternalIP, c.Ports[0].HostTLSProxyPort)

		cfg := routerTLS(agent, "px-mtls")
		_, err = tlsGet(addr, cfg)
		Expect(err).To(HaveOccurred(), "no client certificate")
		cfg.Certificates = []tls.Certificate{other.client("gorouter.service.internal")}
		_, err = tlsGet(addr, cfg)
		Expect(err).To(HaveOccurred(), "certificate from another CA")
		cfg.Certificates = []tls.Certificate{trusted.client("someone.else")}
		_, err = tlsGet(addr, cfg)
		Expect(err).To(HaveOccurred(), "trusted CA, SAN not allowed")
		cfg.Certificates = []tls.Certificate{trusted.client("gorouter.service.internal")}
		Expect(tlsGet(addr, cfg)).To(ContainSubstring("hello from px-mtls"))
	})

	It("keeps every request and connection alive across three rotations", func() {
		start(func(c *config.Config) { c.Identity.Validity = executor.Duration(20 * time.Second) })
		_, err := agent.Client.AllocateAndRun(ctx, "px-rot", request())
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("px-rot", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		var c executor.Container
		Eventually(func() bool { c, _ = agent.Client.Get(ctx, "px-rot"); return c.Routable }, 15*time.Second).Should(BeTrue())
		addr := fmt.Sprintf("%s:%d", c.ExternalIP, c.Ports[0].HostTLSProxyPort)
		first := c.Credentials.Serial

		var requests, failures atomic.Int64
		serials := sync.Map{}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		// New connection per request: sees each new serial.
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer GinkgoRecover()
			cfg := routerTLS(agent, "px-rot")
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				serials.Store(cs.PeerCertificates[0].SerialNumber.Text(16), true)
				return nil
			}
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body, err := tlsGet(addr, cfg)
				requests.Add(1)
				if err != nil || !strings.Contains(body, "px-rot") {
					failures.Add(1)
					GinkgoWriter.Printf("request failed: %v %q\n", err, body)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		// One long-lived keep-alive connection: must never drop.
		var keepAliveRequests, keepAliveFailures atomic.Int64
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer GinkgoRecover()
			conn, err := tls.Dial("tcp", addr, routerTLS(agent, "px-rot"))
			if err != nil {
				keepAliveFailures.Add(1)
				return
			}
			defer conn.Close()
			rd := bufio.NewReader(conn)
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: px-rot\r\n\r\n"); err != nil {
					keepAliveFailures.Add(1)
					return
				}
				resp, err := http.ReadResponse(rd, nil)
				if err != nil {
					keepAliveFailures.Add(1)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				keepAliveRequests.Add(1)
				time.Sleep(50 * time.Millisecond)
			}
		}()

		Eventually(func() int {
			c, _ := agent.Client.Get(ctx, "px-rot")
			if c.Credentials == nil {
				return 0
			}
			return c.Credentials.Rotations
		}, 90*time.Second, time.Second).Should(BeNumerically(">=", 3))
		time.Sleep(2 * time.Second) // let the last rotation be served
		close(stop)
		wg.Wait()
		n := 0
		serials.Range(func(k, v any) bool { n++; return true })
		GinkgoWriter.Printf("requests %d (failed %d), keep-alive requests %d (failed %d), serials seen %d\n",
			requests.Load(), failures.Load(), keepAliveRequests.Load(), keepAliveFailures.Load(), n)
		Expect(failures.Load()).To(BeZero())
		Expect(keepAliveFailures.Load()).To(BeZero())
		Expect(requests.Load()).To(BeNumerically(">", 100))
		Expect(n).To(BeNumerically(">=", 3), "new handshakes saw the rotated certificates")
		_, sawFirst := serials.Load(first)
		Expect(sawFirst).To(BeTrue())
		// cellproxy confirmed each rotation itself: the agent asked it to
		// reload (POST /secrets/reload in the container's network
		// namespace) instead of handshaking.
		log := agent.LogText()
		Expect(strings.Count(log, `"by":"admin"`)).To(BeNumerically(">=", 3), "rotations confirmed by the proxy's admin reload")
		Expect(log).NotTo(ContainSubstring(`"by":"handshake"`))
		Expect(log).NotTo(ContainSubstring("rotation not confirmed"))
	})
})

// proxyPid answers the host pid of guid's proxy process ("" when none).
func proxyPid(agent *testagent.Agent, guid string) string {
	ps, err := agent.ContainerProcs(guid)
	if err != nil || ps.Proxy == nil {
		return ""
	}
	return strconv.Itoa(ps.Proxy.Pid)
}

// handshakeError marks a dial or TLS handshake failure: Gorouter retries
// those on another instance.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "handshake: " + e.err.Error() }
