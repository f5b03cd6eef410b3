package identity_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

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

func request() executor.RunRequest {
	return executor.RunRequest{
		Image:     "preloaded:busybox",
		Resources: &executor.Resources{MemoryMB: 64, DiskMB: 64},
		Process:   executor.Process{Path: "/app/server"},
		Ports:     []uint16{8080},
		Check:     &executor.Check{HTTP: &executor.HTTPCheck{Port: 8080, Path: "/"}},
		CertificateProperties: &executor.CertificateProperties{
			OrganizationalUnit: []string{"organization:o1", "space:s1", "app:a1"}},
		StopGrace: executor.Duration(3 * time.Second),
	}
}

var _ = Describe("instance identity in real containers", func() {
	var (
		agent *testagent.Agent
		ctx   = context.Background()
	)

	var systemCerts string

	BeforeEach(func() {
		// The platform's trusted CAs, as an operator would configure them.
		systemCerts = GinkgoT().TempDir()
		Expect(os.Chmod(systemCerts, 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(systemCerts, "platform-ca.crt"), []byte("platform CA\n"), 0o644)).To(Succeed())
		var err error
		agent, err = testagent.New(GinkgoT().TempDir(), fmt.Sprintf("id%d", time.Now().UnixNano()%100000), func(c *config.Config) {
			c.TrustedSystemCertificatesDir = systemCerts
			c.Network.Mode = "bridge"
			c.Network.Name = "cellagentid"
			c.Network.Bridge = "cellagentid0"
			c.Network.Subnet = "10.254.101.0/24"
			c.Network.HostPortRange = "46100-46199"
			c.Identity.Validity = executor.Duration(30 * time.Second)
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

	It("gives the app its certificate and rotates it without a restart", func() {
		_, err := agent.Client.AllocateAndRun(ctx, "id-1", request())
		Expect(err).NotTo(HaveOccurred())
		c, err := agent.WaitState("id-1", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Credentials).NotTo(BeNil())
		app := fmt.Sprintf("http://%s:8080", c.InternalIP)

		By("the process reads $CF_INSTANCE_CERT and sees the serial the API shows")
		serial, _, err := get(app + "/cert")
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.TrimSpace(serial)).To(Equal(c.Credentials.Serial))
		key, status, err := get(app + "/read?path=/etc/cf-instance-credentials/instance.key")
		Expect(err).NotTo(HaveOccurred())
		Expect(status).To(Equal(200))
		Expect(key).To(ContainSubstring("BEGIN EC PRIVATE KEY"), "SEC1, the traditional form Diego-era readers parse")

		By("the platform's trusted CAs are mounted where Diego mounts them")
		env, _, err := get(app + "/env")
		Expect(err).NotTo(HaveOccurred())
		Expect(env).To(ContainSubstring("CF_SYSTEM_CERT_PATH=/etc/cf-system-certificates"))
		Expect(env).To(ContainSubstring("INSTANCE_GUID=id-1"))
		Expect(env).To(MatchRegexp(`CF_INSTANCE_ADDR=%s:%d`, c.ExternalIP, c.Ports[0].HostPort))
		ca, status, err := get(app + "/read?path=/etc/cf-system-certificates/platform-ca.crt")
		Expect(err).NotTo(HaveOccurred())
		Expect(status).To(Equal(200))
		Expect(ca).To(Equal("platform CA\n"))

		By("the certificate names the instance and its IP")
		crtPEM, _, err := get(app + "/read?path=/etc/cf-instance-credentials/instance.crt")
		Expect(err).NotTo(HaveOccurred())
		block, _ := pem.Decode([]byte(crtPEM))
		Expect(block).NotTo(BeNil())
		cert, err := x509.ParseCertificate(block.Bytes)
		Expect(err).NotTo(HaveOccurred())
		Expect(cert.Subject.CommonName).To(Equal("id-1"))
		Expect(cert.DNSNames).To(ConsistOf("id-1"))
		Expect(cert.IPAddresses).To(ContainElement(BeEquivalentTo(net.ParseIP(c.InternalIP).To4())))
		Expect(cert.Subject.String()).To(Equal("CN=id-1,OU=app:a1+OU=space:s1+OU=organization:o1"), "Diego's subject: one multi-valued OU RDN")

		By("the key belongs to the container's user, mode 0600, on the host")
		info, err := os.Stat(filepath.Join(agent.Config.DataDir, "credentials", "id-1", "..data", "instance.key"))
		Expect(err).NotTo(HaveOccurred())
		Expect(info.Mode().Perm()).To(Equal(os.FileMode(0o600)))

		By("the mount is read-only")
		rc, err := agent.Client.Logs(ctx, "id-1", executor.LogOptions{})
		Expect(err).NotTo(HaveOccurred())
		rc.Close()

		By("with a 30s validity the app sees a new serial while it keeps running")
		pid := c.CreatedAt
		Eventually(func() string {
			s, _, _ := get(app + "/cert")
			return strings.TrimSpace(s)
		}, 40*time.Second, 500*time.Millisecond).ShouldNot(Equal(c.Credentials.Serial))
		after, err := agent.Client.Get(ctx, "id-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(after.State).To(Equal(executor.StateRunning))
		Expect(after.CreatedAt).To(Equal(pid))
		Expect(after.Credentials.Rotations).To(BeNumerically(">=", 1))
		Expect(after.Credentials.Serial).NotTo(Equal(c.Credentials.Serial))
		newSerial, _, _ := get(app + "/cert")
		Expect(strings.TrimSpace(newSerial)).To(Equal(after.Credentials.Serial))

		By("the rotation is on the event stream")
		evCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		evs, err := agent.Client.Events(evCtx, 0)
		Expect(err).NotTo(HaveOccurred())
		Eventually(evs, 10*time.Second).Should(Receive(And(
			HaveField("Type", executor.EventCredentialsRotated),
			HaveField("GUID", "id-1"))))

		By("delete removes the credential files")
		Expect(agent.Client.Delete(ctx, "id-1")).To(Succeed())
		Expect(filepath.Join(agent.Config.DataDir, "credentials", "id-1")).NotTo(BeADirectory())
	})

	It("keeps one instance's credentials invisible to another", func() {
		for _, g := range []string{"id-a", "id-b"} {
			_, err := agent.Client.AllocateAndRun(ctx, g, request())
			Expect(err).NotTo(HaveOccurred())
		}
		_, err := agent.WaitState("id-a", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		b, err := agent.WaitState("id-b", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		hostDirA := filepath.Join(agent.Config.DataDir, "credentials", "id-a", "instance.key")
		for _, p := range []string{hostDirA, "/etc/cf-instance-credentials/../../" + hostDirA} {
			body, status, err := get(fmt.Sprintf("http://%s:8080/read?path=%s", b.InternalIP, p))
			Expect(err).NotTo(HaveOccurred())
			Expect(status).To(Equal(http.StatusForbidden), body)
		}
		own, status, _ := get(fmt.Sprintf("http://%s:8080/read?path=/etc/cf-instance-credentials/instance.key", b.InternalIP))
		Expect(status).To(Equal(200))
		theirs, err := os.ReadFile(hostDirA)
		Expect(err).NotTo(HaveOccurred())
		Expect(own).NotTo(Equal(string(theirs)))
	})

	It("rejects certificate properties that are not printable strings of sane length", func() {
		for _, ou := range []string{strings.Repeat("x", 65), "a\x00b", ""} {
			req := request()
			req.CertificateProperties.OrganizationalUnit = []string{ou}
			_, err := agent.Client.AllocateAndRun(ctx, "id-bad", req)
			Expect(err).To(MatchError(executor.ErrInvalidRequest), "%q", ou)
		}
		_, err := agent.Client.Get(ctx, "id-bad")
		Expect(err).To(MatchError(executor.ErrContainerNotFound))
	})
})
