package faults_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore/network"
	"github.com/cellagent/cellagent/integration/testagent"
)

func TestFaults(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Fault injection suite (real containerd + CNI + NATS)")
}

var _ = BeforeSuite(func() {
	if !testagent.Enabled() {
		Skip("integration tests need root and CELLAGENT_INTEGRATION=1 (run scripts/test)")
	}
	_, err := testagent.BinDir()
	Expect(err).NotTo(HaveOccurred())
	removeLeftovers()
})

// removeLeftovers removes what an earlier run left of the suite's network
// (iptables rules, empty network namespaces), so that one run's leak does
// not fail the next run's inventory checks, and reports it: the run that
// left it failed its own check. What belongs to a live instance (a netns
// with processes in it) is left alone, in case another run of this suite
// is going on.
func removeLeftovers() {
	live := map[string]bool{}
	var removed []string
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		guid, ok := strings.CutPrefix(e.Name(), netName+"-")
		if !ok {
			continue
		}
		if pids, _ := exec.Command("ip", "netns", "pids", e.Name()).Output(); len(strings.TrimSpace(string(pids))) > 0 {
			live[guid] = true
			continue
		}
		out, err := exec.Command("ip", "netns", "delete", e.Name()).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		removed = append(removed, "netns "+e.Name())
	}
	rules, err := testagent.NetworkRules(netName, netSubnet)
	Expect(err).NotTo(HaveOccurred())
	chains := map[string]bool{}
	nftPorts := map[string][]uint16{}
	for rule, owner := range rules {
		if live[owner] {
			continue
		}
		table, spec, _ := strings.Cut(rule, ": ")
		if table == "nft" {
			// The agent's nftables table: gather the guid's forwards,
			// removed below with the agent's own code.
			var port uint16
			if _, err := fmt.Sscanf(spec, "hostports %d", &port); err == nil {
				nftPorts[owner] = append(nftPorts[owner], port)
			} else if _, ok := nftPorts[owner]; !ok {
				nftPorts[owner] = nil
			}
			removed = append(removed, rule)
			continue
		}
		chain := strings.Fields(spec)[1]
		if strings.HasPrefix(chain, "CNI-") && !strings.HasPrefix(chain, "CNI-HOSTPORT-") {
			chains[table+" "+chain] = true
		}
		// iptables-save quotes as a shell would read it back.
		out, err := exec.Command("bash", "-c", "iptables -w -t "+table+" -D "+strings.TrimPrefix(spec, "-A ")).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "remove leftover rule %s: %s", rule, out)
		removed = append(removed, rule)
	}
	for tc := range chains {
		table, chain, _ := strings.Cut(tc, " ")
		_ = exec.Command("iptables", "-w", "-t", table, "-X", chain).Run()
	}
	nft := network.NFTables{Network: netName}
	for guid, ports := range nftPorts {
		Expect(nft.Unmap(context.Background(), guid, ports)).To(Succeed(), "remove leftover forwards of %s", guid)
	}
	if len(removed) > 0 {
		sort.Strings(removed)
		AddReportEntry("leftovers of an earlier run, removed", strings.Join(removed, "\n"), ReportEntryVisibilityAlways)
	}
}

// The closing-note table: one row per fault, printed at the end of the
// suite (go test -v shows it) and appended to $CELLAGENT_FAULTS_TABLE when
// set.
var (
	tableMu sync.Mutex
	table   []string
)

func tableRow(fault string, tries int, lost string) {
	row := fmt.Sprintf("| %s | %d | %s |", fault, tries, lost)
	tableMu.Lock()
	table = append(table, row)
	tableMu.Unlock()
	AddReportEntry("fault", row, ReportEntryVisibilityAlways)
}

var _ = AfterSuite(func() {
	tableMu.Lock()
	defer tableMu.Unlock()
	if len(table) == 0 {
		return
	}
	out := "| fault | times tried | lost |\n|---|---|---|\n" + strings.Join(table, "\n") + "\n"
	fmt.Fprint(GinkgoWriter, out)
	fmt.Print(out)
	if path := os.Getenv("CELLAGENT_FAULTS_TABLE"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		Expect(err).NotTo(HaveOccurred())
		defer f.Close()
		_, err = f.WriteString(out)
		Expect(err).NotTo(HaveOccurred())
	}
})
