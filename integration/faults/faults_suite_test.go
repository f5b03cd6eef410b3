package faults_test

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

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
})

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
