package routeintegrity_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
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

// cellNetwork is one agent's bridge network; agents sharing the machine at
// the same time need different ones. Host port ranges stay clear of the
// other suites' (45000-46399) and of cellbench's (47000-47999).
type cellNetwork struct {
	name, subnet, ports string
}

// startAgent starts an agent with bridge networking and the proxy on, and
// deletes its containers and stops it when the spec ends.
func startAgent(prefix string, netw cellNetwork, modify func(*config.Config)) *testagent.Agent {
	agent, err := testagent.New(GinkgoT().TempDir(), fmt.Sprintf("%s%d", prefix, time.Now().UnixNano()%100000), func(c *config.Config) {
		c.Network.Mode = "bridge"
		c.Network.Name = netw.name
		c.Network.Bridge = netw.name + "0"
		c.Network.Subnet = netw.subnet
		c.Network.HostPortRange = netw.ports
		c.Proxy.Enabled = true
		// testagent.New picks the admin and NATS ports with two separate
		// FreePort calls, which can answer the same port twice.
		c.Listen.Admin, c.NATS.EmbeddedListen = twoFreeAddrs()
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
	return agent
}

// twoFreeAddrs answers two distinct free 127.0.0.1 addresses, holding the
// first listener open while picking the second.
func twoFreeAddrs() (string, string) {
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l1.Close()
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l2.Close()
	return l1.Addr().String(), l2.Addr().String()
}

// identityCA is the agent's dev identity CA, what Gorouter's ca_certs must
// hold to reach its instances.
func identityCA(agent *testagent.Agent) []byte {
	ca, err := os.ReadFile(filepath.Join(agent.Config.DataDir, "identity", "ca.crt"))
	Expect(err).NotTo(HaveOccurred())
	return ca
}

func request(hostname string) executor.RunRequest {
	return executor.RunRequest{
		Image:     "preloaded:busybox",
		LogGUID:   "ri-log",
		Resources: &executor.Resources{MemoryMB: 64, DiskMB: 64},
		Process:   executor.Process{Path: "/app/server"},
		Ports:     []uint16{8080},
		Routes:    []executor.Route{{Hostnames: []string{hostname}, Port: 8080}},
		Check:     &executor.Check{HTTP: &executor.HTTPCheck{Port: 8080, Path: "/"}},
		StopGrace: executor.Duration(2 * time.Second),
	}
}

// runRoutable runs guid with a route to hostname and waits until the agent
// has verified it and made it routable.
func runRoutable(agent *testagent.Agent, guid, hostname string) executor.Container {
	ctx := context.Background()
	_, err := agent.Client.AllocateAndRun(ctx, guid, request(hostname))
	Expect(err).NotTo(HaveOccurred())
	c, err := agent.WaitState(guid, executor.StateRunning, 45*time.Second)
	Expect(err).NotTo(HaveOccurred())
	Eventually(func() bool {
		c, _ = agent.Client.Get(ctx, guid)
		return c.Routable
	}, 20*time.Second, 100*time.Millisecond).Should(BeTrue(), "%s never became routable", guid)
	Expect(c.Ports).To(HaveLen(1))
	return c
}

// tlsAddress is where a router reaches c's proxy.
func tlsAddress(c executor.Container) string {
	return net.JoinHostPort(c.ExternalIP, strconv.Itoa(int(c.Ports[0].HostTLSProxyPort)))
}

var answerPattern = regexp.MustCompile(`^hello from (\S+) \(index \d+\)`)

// answeredBy is the instance guid the demo app put in its answer to "/".
func answeredBy(body string) string {
	m := answerPattern.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// directGet asks addr over TLS with serverName, bypassing any router.
func directGet(addr, serverName string, caPEM []byte) (string, error) {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	client := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serverName}, DisableKeepAlives: true}}
	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
