package hardening_test

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
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
	"github.com/cellagent/cellagent/routeemitter/natsauth"
)

var ctx = context.Background()

var _ = Describe("the loopback API and a web page (item 8)", func() {
	It("refuses a text/plain cross-origin run and a DNS-rebound Host, and creates nothing", func() {
		agent := startAgent("hcs", nil)
		send := func(host, contentType, origin string) int {
			req, err := http.NewRequest("PUT", agent.API+"/v1/containers/evil-1",
				strings.NewReader(`{"image":"preloaded:busybox","resources":{"memory_mb":64},"process":{"path":"/app/server"}}`))
			Expect(err).NotTo(HaveOccurred())
			if host != "" {
				req.Host = host
			}
			req.Header.Set("Content-Type", contentType)
			if origin != "" {
				req.Header.Set("Origin", origin)
			}
			resp, err := http.DefaultClient.Do(req)
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			return resp.StatusCode
		}
		Expect(send("", "text/plain", "http://evil.example")).To(Equal(http.StatusForbidden))
		Expect(send("", "text/plain", "")).To(Equal(http.StatusUnsupportedMediaType))
		Expect(send("evil.example:"+strings.Split(agent.Config.Listen.Admin, ":")[1], "application/json", "")).To(Equal(http.StatusForbidden))
		_, err := agent.Client.Get(ctx, "evil-1")
		Expect(err).To(MatchError(executor.ErrContainerNotFound))

		_, code, err := get(agent.API + "/debug/pprof/")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(http.StatusNotFound), "pprof is off unless listen.pprof")
	})
})

var _ = Describe("a fork bomb in one instance (item 5)", func() {
	It("hits the default pids limit while its neighbour and the agent keep working", func() {
		const limit = 256
		agent := startAgent("hfb", func(c *config.Config) { c.DefaultMaxPids = limit })
		port, _ := testagent.FreePort()
		_, err := agent.Client.AllocateAndRun(ctx, "neighbour-1", demoApp(port))
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("neighbour-1", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())

		// 3x the limit in sleeping children, bounded; pid 1 stays a sleep.
		bomb := executor.RunRequest{
			Image:     "preloaded:busybox",
			Resources: &executor.Resources{MemoryMB: 256, DiskMB: 64}, // no max_pids: the default applies
			Process: executor.Process{Path: "/bin/sh", Args: []string{"-c",
				fmt.Sprintf(`(i=0; while [ $i -lt %d ]; do sleep 600 & i=$((i+1)); done) 2>/dev/null & exec sleep 600`, 3*limit)}},
			StopGrace: executor.Duration(time.Second),
		}
		_, err = agent.Client.AllocateAndRun(ctx, "bomb-1", bomb)
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("bomb-1", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())

		cg := pidsCgroup(taskPids(agent, "bomb-1")[0])
		Expect(readTrim(filepath.Join(cg, "pids.max"))).To(Equal(strconv.Itoa(limit)))
		Eventually(func() string { return readTrim(filepath.Join(cg, "pids.events")) }, 30*time.Second, 200*time.Millisecond).
			ShouldNot(Equal("max 0"), "forks were refused at the limit")
		n, err := strconv.Atoi(readTrim(filepath.Join(cg, "pids.current")))
		Expect(err).NotTo(HaveOccurred())
		Expect(n).To(BeNumerically("<=", limit))

		By("the neighbour still serves, the agent answers and starts another instance")
		body, code, err := get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200))
		Expect(body).To(ContainSubstring("neighbour-1"))
		Expect(agent.Client.Ping(ctx)).To(Succeed())
		port2, _ := testagent.FreePort()
		_, err = agent.Client.AllocateAndRun(ctx, "after-1", demoApp(port2))
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("after-1", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())

		Expect(agent.Client.Delete(ctx, "bomb-1")).To(Succeed())
		_, code, err = get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200))
	})
})

var _ = Describe("root and hostile images (items 1 and 3)", func() {
	It("refuses root by request or by /etc/passwd, and reads a hostile passwd without following it out or blocking", func() {
		dir := GinkgoT().TempDir()
		rootfs := func(name string, mk func(passwd string)) string {
			p := filepath.Join(dir, name)
			Expect(os.MkdirAll(filepath.Join(p, "etc"), 0o755)).To(Succeed())
			mk(filepath.Join(p, "etc", "passwd"))
			return p
		}
		hostFile := filepath.Join(dir, "host-passwd")
		Expect(os.WriteFile(hostFile, []byte("vcap:x:0:0::/root:/bin/sh\n"), 0o644)).To(Succeed())
		rootImage := rootfs("rootimage", func(p string) {
			Expect(os.WriteFile(p, []byte("vcap:x:0:0::/root:/bin/sh\n"), 0o644)).To(Succeed())
		})
		symlinked := rootfs("symlinked", func(p string) { Expect(os.Symlink(hostFile, p)).To(Succeed()) })
		fifo := rootfs("fifo", func(p string) { Expect(syscall.Mkfifo(p, 0o644)).To(Succeed()) })
		agent := startAgent("hrt", func(c *config.Config) {
			c.PreloadedRootfs["rootimage"], c.PreloadedRootfs["symlinked"], c.PreloadedRootfs["fifo"] = rootImage, symlinked, fifo
			c.AllowPrivileged = true // only a request that asks gets root
		})
		run := func(guid, image, user string) error {
			req := executor.RunRequest{Image: image, Resources: &executor.Resources{MemoryMB: 64},
				Process: executor.Process{Path: "/bin/true", User: user}}
			_, err := agent.Client.AllocateAndRun(ctx, guid, req)
			return err
		}

		By(`"user": "0" and "root" are refused at request time`)
		Expect(run("root-1", "preloaded:busybox", "0")).To(MatchError(ContainSubstring(`process user "0" is root`)))
		Expect(run("root-2", "preloaded:busybox", "root")).To(MatchError(executor.ErrInvalidRequest))

		By("an image whose passwd makes vcap uid 0 fails before a container exists")
		Expect(run("root-3", "preloaded:rootimage", "vcap")).To(Succeed())
		c, err := agent.WaitState("root-3", executor.StateCompleted, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.RunResult.FailureReason).To(ContainSubstring("resolves to uid 0 gid 0"))

		By("a privileged request on a cell that allows it runs as root")
		_, err = agent.Client.AllocateAndRun(ctx, "priv-1", executor.RunRequest{Image: "preloaded:busybox",
			Resources: &executor.Resources{MemoryMB: 64}, Privileged: true, StopGrace: executor.Duration(time.Second),
			Process: executor.Process{Path: "/bin/sleep", Args: []string{"600"}, User: "root"}})
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("priv-1", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		priv, err := agent.ContainerProcs("priv-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(priv.App.UID).To(Equal("0"))
		Expect(agent.Client.Delete(ctx, "priv-1")).To(Succeed())

		By("an absolute symlink to a host passwd resolves inside the rootfs (to nothing)")
		err = run("link-1", "preloaded:symlinked", "vcap")
		Expect(err).To(MatchError(executor.ErrInvalidRequest))
		Expect(err).To(MatchError(ContainSubstring(`user "vcap" does not exist`)))

		By("a FIFO is refused at once, and the agent keeps serving")
		err = run("fifo-1", "preloaded:fifo", "vcap")
		Expect(err).To(MatchError(ContainSubstring("not a regular file")))
		Expect(agent.Client.Ping(ctx)).To(Succeed())
		st, err := agent.Client.State(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Containers["reserved"]).To(BeZero(), "no slot left behind")
	})
})

var _ = Describe("the proxy and the app in their container (items 2, 13 and capabilities)", func() {
	It("runs the proxy unprivileged with its own file limit, and the app with no capabilities", func() {
		agent := startAgent("hpx", func(c *config.Config) {
			c.Network.Mode = "bridge"
			c.Network.Name = "cellagenthd"
			c.Network.Bridge = "cellagenthd0"
			c.Network.Subnet = "10.254.131.0/24"
			c.Network.HostPortRange = "47300-47399"
			c.Proxy.Enabled = true
		})
		req := demoApp(8080)
		req.Resources.MemoryMB = 256 // the app and the proxy hold 2,000 connections below
		_, err := agent.Client.AllocateAndRun(ctx, "px-1", req)
		Expect(err).NotTo(HaveOccurred())
		ctr, err := agent.WaitState("px-1", executor.StateRunning, 60*time.Second)
		Expect(err).NotTo(HaveOccurred())

		var ps testagent.Processes
		Eventually(func() *testagent.Proc {
			ps, _ = agent.ContainerProcs("px-1")
			return ps.Proxy
		}, 30*time.Second).ShouldNot(BeNil(), "a process with the proxy's uid")
		Expect(ps.App).NotTo(BeNil())
		app, proxy := strconv.Itoa(ps.App.Pid), strconv.Itoa(ps.Proxy.Pid)

		pst := status(proxy)
		Expect(statusField(pst, "Gid")).To(Equal(strconv.Itoa(int(agent.Config.Proxy.GID))))
		for _, set := range []string{"CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"} {
			Expect(statusField(pst, set)).To(Equal("0000000000000000"), "the proxy's "+set)
		}
		Expect(statusField(pst, "NoNewPrivs")).To(Equal("1"))
		Expect(statusField(pst, "Seccomp")).To(Equal("2"))
		// 65536, or the agent's own hard limit where that is lower (a
		// sandbox without CAP_SYS_RESOURCE); the app keeps the container's.
		proxyFiles, appFiles := openFilesLimit(proxy), openFilesLimit(app)
		Expect(proxyFiles).To(BeNumerically(">=", 8192))
		Expect(proxyFiles).To(BeNumerically(">", appFiles))

		ast := status(app)
		Expect(statusField(ast, "Uid")).To(Equal("2000"))
		Expect(statusField(ast, "Gid")).To(Equal("2000"))
		for _, set := range []string{"CapEff", "CapPrm", "CapInh", "CapAmb"} {
			Expect(statusField(ast, set)).To(Equal("0000000000000000"), "a non-root app has no "+set)
		}
		Expect(statusField(ast, "NoNewPrivs")).To(Equal("1"))
		Expect(statusField(ast, "Seccomp")).To(Equal("2"))
		appBnd, err := strconv.ParseUint(statusField(ast, "CapBnd"), 16, 64)
		Expect(err).NotTo(HaveOccurred())
		Expect(appBnd&(1<<13|1<<21)).To(BeZero(), "no NET_RAW (13) or SYS_ADMIN (21) in the app's bounding set")

		if agent.Config.Proxy.InitEnabled() {
			By("cellinit, the first process, is root with no more than it needs to restart the proxy and signal the app")
			Expect(ps.Init).NotTo(BeNil())
			ist := ps.Init.Status
			Expect(statusField(ist, "Uid")).To(Equal("0"))
			kept := fmt.Sprintf("%016x", uint64(1<<5|1<<6|1<<7|1<<8)) // KILL, SETGID, SETUID, SETPCAP
			for _, set := range []string{"CapEff", "CapPrm", "CapBnd"} {
				Expect(statusField(ist, set)).To(Equal(kept), "cellinit's "+set)
			}
			Expect(statusField(ist, "CapInh")).To(Equal("0000000000000000"))
			Expect(statusField(ist, "CapAmb")).To(Equal("0000000000000000"))
			Expect(statusField(ist, "NoNewPrivs")).To(Equal("1"))
			Expect(statusField(ist, "Seccomp")).To(Equal("2"))
			Expect(ps.App.PPid).To(Equal(ps.Init.Pid))
			Expect(ps.Proxy.PPid).To(Equal(ps.Init.Pid))

			By("the log directory cellinit writes is not the app's")
			_, code, err := get(fmt.Sprintf("http://%s:8080/read?path=/etc/cf-assets/cellinit-run/proxy-state.json", ctr.InternalIP))
			Expect(err).NotTo(HaveOccurred())
			Expect(code).To(Equal(http.StatusForbidden))
		} else {
			Expect(ps.Init).To(BeNil())
		}

		By("the app reads its own key through the bind mount, but not the proxy's files")
		base := fmt.Sprintf("http://%s:8080", ctr.InternalIP)
		body, code, err := get(base + "/read?path=/etc/cf-instance-credentials/instance.key")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200))
		Expect(body).To(ContainSubstring("PRIVATE KEY"))
		_, code, err = get(base + "/read?path=/etc/cf-assets/envoy_config/sds-id-cert-and-key.yaml")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(http.StatusForbidden), "the proxy's key is the proxy's")

		By("credentials/ on the host is root's alone")
		fi, err := os.Stat(filepath.Join(agent.Config.DataDir, "credentials"))
		Expect(err).NotTo(HaveOccurred())
		Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o700)))

		By("2,000 idle connections to the instance's TLS port do not stop a client that completes a handshake (item 7)")
		tlsAddr := net.JoinHostPort(ctr.ExternalIP, strconv.Itoa(int(ctr.Ports[0].HostTLSProxyPort)))
		var idle []net.Conn
		DeferCleanup(func() {
			for _, c := range idle {
				c.Close()
			}
		})
		for range 2000 {
			c, err := net.DialTimeout("tcp", tlsAddr, 5*time.Second)
			Expect(err).NotTo(HaveOccurred())
			idle = append(idle, c)
		}
		ca, err := os.ReadFile(filepath.Join(agent.Config.DataDir, "identity", "ca.crt"))
		Expect(err).NotTo(HaveOccurred())
		pool := x509.NewCertPool()
		Expect(pool.AppendCertsFromPEM(ca)).To(BeTrue())
		client := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "px-1"}, DisableKeepAlives: true}}
		resp, err := client.Get("https://" + tlsAddr + "/")
		Expect(err).NotTo(HaveOccurred())
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		Expect(string(b)).To(ContainSubstring("px-1"))
	})
})

var _ = Describe("the embedded NATS (item 9)", func() {
	It("requires its user and password, which the agent uses and cellctl routes reads as root on the cell", func() {
		agent := startAgent("hnt", func(c *config.Config) { c.NATS.EmbeddedAuth = config.NATSAuth{} }) // generated
		auth, err := natsauth.ReadEmbeddedAuth(agent.Config.DataDir)
		Expect(err).NotTo(HaveOccurred())
		fi, err := os.Stat(filepath.Join(agent.Config.DataDir, natsauth.EmbeddedAuthFile))
		Expect(err).NotTo(HaveOccurred())
		Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o600)))

		plain := "nats://" + agent.Config.NATS.EmbeddedListen
		_, err = nats.Connect(plain, nats.NoReconnect())
		Expect(err).To(MatchError(ContainSubstring("Authorization Violation")), "an anonymous local process cannot publish routes")
		nc, err := nats.Connect(plain, nats.UserInfo(auth.User, auth.Password))
		Expect(err).NotTo(HaveOccurred())
		nc.Close()
		st, err := agent.Client.State(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.NATS).To(Equal("connected"), "the agent itself connects with the credential")

		bins, _ := testagent.BinDir()
		cellctl := func(dataDir string) (string, error) {
			out, err := exec.Command(filepath.Join(bins, "cellctl"), "routes", "--nats", plain, "--data-dir", dataDir, "--listen", "1s").CombinedOutput()
			return string(out), err
		}
		out, err := cellctl(agent.Config.DataDir)
		Expect(err).NotTo(HaveOccurred(), out)
		out, err = cellctl(GinkgoT().TempDir())
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("Authorization Violation"))
	})
})

var _ = Describe("disk_mb (item 6)", func() {
	It("stops an instance that writes past its disk_mb and keeps its neighbour", func() {
		agent := startAgent("hdk", func(c *config.Config) { c.HealthInterval = executor.Duration(time.Second) })
		port, _ := testagent.FreePort()
		_, err := agent.Client.AllocateAndRun(ctx, "calm-1", demoApp(port))
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("calm-1", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())

		_, err = agent.Client.AllocateAndRun(ctx, "filler-1", executor.RunRequest{
			Image:     "preloaded:busybox",
			Resources: &executor.Resources{MemoryMB: 64, DiskMB: 16},
			Process:   executor.Process{Path: "/bin/sh", Args: []string{"-c", "dd if=/dev/zero of=/tmp/fill bs=1M count=40 2>/dev/null; exec sleep 600"}},
			StopGrace: executor.Duration(time.Second),
		})
		Expect(err).NotTo(HaveOccurred())
		c, err := agent.WaitState("filler-1", executor.StateCompleted, 60*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.RunResult.Failed).To(BeTrue())
		Expect(c.RunResult.FailureReason).To(ContainSubstring("disk limit exceeded"))

		body, code, err := get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200))
		Expect(body).To(ContainSubstring("calm-1"))
	})
})

// openFilesLimit answers a process's soft RLIMIT_NOFILE, checking that the
// hard limit is the same.
func openFilesLimit(pid string) int {
	GinkgoHelper()
	b, err := os.ReadFile("/proc/" + pid + "/limits")
	Expect(err).NotTo(HaveOccurred())
	m := regexp.MustCompile(`Max open files\s+(\d+)\s+(\d+)`).FindStringSubmatch(string(b))
	Expect(m).To(HaveLen(3), string(b))
	Expect(m[1]).To(Equal(m[2]), "soft and hard limits")
	n, _ := strconv.Atoi(m[1])
	return n
}
