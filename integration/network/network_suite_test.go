// Package network_test drives containerstore/network against the real
// kernel (rtnetlink, nftables, conntrack), iproute2 and iptables: with the
// in-process plumbing, or with the real CNI plugins when
// CELLAGENT_IT_PLUMBING=cni (scripts/test runs both). It needs root and
// runs only with CELLAGENT_INTEGRATION=1.
package network_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore/network"
)

func TestNetworkIntegration(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Network Integration Suite")
}

var (
	hadBridge      bool
	hadTable       bool
	integrationRun bool
)

func integrationEnabled() bool { return os.Getenv("CELLAGENT_INTEGRATION") == "1" }

// hostReady says why this machine cannot run the suite, or "".
func hostReady() string {
	if os.Geteuid() != 0 {
		return "needs root"
	}
	for _, bin := range []string{"ip", "nft", "iptables", "iptables-save", "busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			return bin + " not installed"
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		return "containernetworking-plugins not installed"
	}
	return ""
}

var _ = BeforeSuite(func() {
	if !integrationEnabled() {
		Skip("set CELLAGENT_INTEGRATION=1 (as root) to run the network integration tests")
	}
	if why := hostReady(); why != "" {
		Fail("CELLAGENT_INTEGRATION=1 but " + why)
	}
	integrationRun = true
	GinkgoWriter.Printf("plumbing: %s\n", testConfig("/", 0).Plumbing)
	_, err := os.Stat("/sys/class/net/" + bridgeName)
	hadBridge = err == nil
	hadTable = exec.Command("nft", "list", "table", "ip", nftTable).Run() == nil

	// Warm up: the first container makes the bridge (and the manager the
	// nftables table), which stay; tests then compare the host before and
	// after.
	logger := lagertest.NewTestLogger("warm-up")
	m, err := network.New(logger, testConfig(GinkgoT().TempDir(), 0))
	Expect(err).NotTo(HaveOccurred())
	_, err = m.Setup(context.Background(), logger, "warm-up", []uint16{8080})
	Expect(err).NotTo(HaveOccurred())
	Expect(m.Teardown(context.Background(), logger, "warm-up")).To(Succeed())
})

var _ = AfterSuite(func() {
	if !integrationRun {
		return
	}
	sweepNetNS(context.Background())
	if !hadBridge {
		_ = exec.Command("ip", "link", "delete", bridgeName).Run()
	}
	if !hadTable {
		_ = exec.Command("nft", "delete", "table", "ip", nftTable).Run()
	}
})

// testConfig is the suite's network: its own name, bridge and subnet.
func testConfig(dataDir string, quarantine time.Duration) network.Config {
	cfg := network.DefaultConfig()
	cfg.DataDir = dataDir
	cfg.NetworkName = netName
	cfg.BridgeName = bridgeName
	cfg.Subnet = subnet
	cfg.HostPortRange = "45000-45099"
	cfg.PortQuarantine = quarantine
	if p := os.Getenv("CELLAGENT_IT_PLUMBING"); p != "" {
		cfg.Plumbing = p
	}
	return cfg
}
