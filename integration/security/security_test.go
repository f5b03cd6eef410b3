package security_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

func request(port int) executor.RunRequest {
	return executor.RunRequest{
		Image:     "preloaded:busybox",
		Resources: &executor.Resources{MemoryMB: 64, DiskMB: 64},
		Process:   executor.Process{Path: "/app/server", Args: []string{strconv.Itoa(port)}},
		Ports:     []uint16{uint16(port)},
		Check:     &executor.Check{HTTP: &executor.HTTPCheck{Port: uint16(port), Path: "/"}},
		StopGrace: executor.Duration(3 * time.Second),
	}
}

func get(url string) (string, int, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}

// appPid answers the host pid of guid's app (cellinit's child when the
// container runs under cellinit).
func appPid(agent *testagent.Agent, guid string) string {
	ps, err := agent.ContainerProcs(guid)
	Expect(err).NotTo(HaveOccurred())
	return strconv.Itoa(ps.App.Pid)
}

type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(name string) pki {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, IsCA: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ := x509.ParseCertificate(der)
	return pki{cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca pki) leaf(name string, server bool) (certPEM, keyPEM []byte, pair tls.Certificate) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
	pair, _ = tls.X509KeyPair(certPEM, keyPEM)
	return
}

var _ = Describe("hardening, the secure listener and evacuation", func() {
	var (
		agent *testagent.Agent
		ctx   = context.Background()
	)

	start := func(modify func(*config.Config)) {
		var err error
		agent, err = testagent.New(GinkgoT().TempDir(), fmt.Sprintf("sec%d", time.Now().UnixNano()%100000), modify)
		Expect(err).NotTo(HaveOccurred())
		Expect(agent.Start()).To(Succeed())
		DeferCleanup(func() {
			agent.Cleanup()
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Println(agent.LogText())
			}
		})
	}

	It("runs apps non-root, with no_new_privs, seccomp, no NET_RAW, masked /proc paths and allowlisted bind mounts only", func() {
		allowed := GinkgoT().TempDir()
		Expect(os.Chmod(allowed, 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(allowed, "shared.txt"), []byte("shared data"), 0o644)).To(Succeed())
		forbidden := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(forbidden, "secret.txt"), []byte("secret"), 0o644)).To(Succeed())
		Expect(os.Symlink(forbidden, filepath.Join(allowed, "escape"))).To(Succeed())
		start(func(c *config.Config) { c.BindMountAllowlist = []string{allowed} })

		port, _ := testagent.FreePort()
		req := request(port)
		req.BindMounts = []executor.BindMount{{HostPath: allowed, ContainerPath: "/data", ReadOnly: true}}
		_, err := agent.Client.AllocateAndRun(ctx, "hard-1", req)
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("hard-1", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())

		status, err := os.ReadFile("/proc/" + appPid(agent, "hard-1") + "/status")
		Expect(err).NotTo(HaveOccurred())
		Expect(string(status)).To(MatchRegexp(`Uid:\s+2000\s`))
		Expect(string(status)).To(MatchRegexp(`NoNewPrivs:\s+1`))
		Expect(string(status)).To(MatchRegexp(`Seccomp:\s+2`))
		capBnd := regexp.MustCompile(`CapBnd:\s+([0-9a-f]+)`).FindStringSubmatch(string(status))
		Expect(capBnd).To(HaveLen(2))
		bnd, _ := strconv.ParseUint(capBnd[1], 16, 64)
		Expect(bnd&(1<<13)).To(BeZero(), "CAP_NET_RAW (13) is not in the bounding set")
		Expect(bnd&(1<<21)).To(BeZero(), "CAP_SYS_ADMIN (21) is not in the bounding set")

		app := fmt.Sprintf("http://127.0.0.1:%d", port)
		body, code, err := get(app + "/read?path=/data/shared.txt")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200))
		Expect(body).To(Equal("shared data"))
		body, _, _ = get(app + "/read?path=/proc/kcore")
		Expect(body).NotTo(ContainSubstring("ELF"), "/proc/kcore is masked")
		_, code, _ = get(app + "/read?path=/data/escape/secret.txt")
		Expect(code).To(Equal(http.StatusForbidden), "a symlink inside the mount does not lead outside it (read-only, other owner)")

		By("bind mounts from outside the allowlist, through a symlink, or onto reserved paths are refused")
		for _, m := range []executor.BindMount{
			{HostPath: forbidden, ContainerPath: "/data"},
			{HostPath: filepath.Join(allowed, "escape"), ContainerPath: "/data"},
			{HostPath: allowed + "/../" + filepath.Base(forbidden), ContainerPath: "/data"},
			{HostPath: allowed, ContainerPath: "/etc/cf-instance-credentials"},
			{HostPath: allowed, ContainerPath: "/proc/x"},
			{HostPath: "relative", ContainerPath: "/data"},
		} {
			req := request(port + 1)
			req.BindMounts = []executor.BindMount{m}
			_, err := agent.Client.AllocateAndRun(ctx, "hard-bad", req)
			Expect(err).To(MatchError(executor.ErrInvalidRequest), "%+v", m)
		}
	})

	It("requires client certificates from listen.tls.client_ca on the secure listener", func() {
		dir := GinkgoT().TempDir()
		ca, other := newCA("orchestrators"), newCA("strangers")
		serverCert, serverKey, _ := ca.leaf("cell", true)
		files := map[string][]byte{"ca.pem": ca.pem, "server.pem": serverCert, "server.key": serverKey}
		for name, b := range files {
			Expect(os.WriteFile(filepath.Join(dir, name), b, 0o600)).To(Succeed())
		}
		securePort, _ := testagent.FreePort()
		start(func(c *config.Config) {
			c.Listen.Secure = fmt.Sprintf("127.0.0.1:%d", securePort)
			c.Listen.TLS = config.TLS{Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server.key"), ClientCA: filepath.Join(dir, "ca.pem")}
			c.Listen.Pprof = true
		})
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(ca.pem)
		call := func(certs ...tls.Certificate) (int, error) {
			client := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
			resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/v1/state", securePort))
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}
		_, err := call()
		Expect(err).To(HaveOccurred(), "no client certificate")
		_, _, strangerPair := other.leaf("orchestrator", false)
		_, err = call(strangerPair)
		Expect(err).To(HaveOccurred(), "certificate from another CA")
		_, _, goodPair := ca.leaf("orchestrator", false)
		Expect(call(goodPair)).To(Equal(200))

		By("pprof (listen.pprof) is on the admin listener only")
		_, code, err := get(agent.API + "/debug/pprof/")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200))
		client := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{goodPair}}}}
		resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/debug/pprof/", securePort))
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusNotFound))
	})

	It("evacuates: refuses new work, keeps instances until deleted, then exits", func() {
		start(nil)
		port, _ := testagent.FreePort()
		_, err := agent.Client.AllocateAndRun(ctx, "evac-1", request(port))
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("evac-1", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(agent.Client.Evacuate(ctx)).To(Succeed())
		st, err := agent.Client.State(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Evacuating).To(BeTrue())
		_, err = agent.Client.AllocateAndRun(ctx, "evac-2", request(port+1))
		Expect(err).To(MatchError(executor.ErrEvacuating))
		failures, err := agent.Client.Allocate(ctx, []executor.AllocationRequest{{GUID: "evac-3", Resources: executor.Resources{MemoryMB: 10}}})
		Expect(err).NotTo(HaveOccurred())
		Expect(failures).To(HaveLen(1))
		Expect(failures[0].Error.Code).To(Equal(executor.CodeEvacuating))
		Consistently(agent.Exited(), 2*time.Second).ShouldNot(BeClosed())
		_, code, err := get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200), "the instance keeps running while evacuating")
		Expect(agent.Client.Delete(ctx, "evac-1")).To(Succeed())
		Eventually(agent.Exited(), 10*time.Second).Should(BeClosed())
	})

	It("stops instances itself after evacuation_timeout (on SIGUSR1) and exits", func() {
		start(func(c *config.Config) { c.EvacuationTimeout = executor.Duration(2 * time.Second) })
		port, _ := testagent.FreePort()
		_, err := agent.Client.AllocateAndRun(ctx, "evac-t", request(port))
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("evac-t", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(agent.Signal("USR1")).To(Succeed())
		Eventually(agent.Exited(), 30*time.Second).Should(BeClosed())
		Expect(agent.LogText()).To(ContainSubstring("evacuation-timeout-stopping"))
		out, _ := exec.Command("ctr", "--address", testagent.Socket(), "-n", agent.Config.Containerd.Namespace, "containers", "ls", "-q").CombinedOutput()
		Expect(string(out)).NotTo(ContainSubstring("evac-t"))
	})
})
