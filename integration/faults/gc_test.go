// Regression spec: it found that the import snapshot of a preloaded rootfs
// had neither a lease nor a gc.root label, so containerd's garbage collector
// removed it mid-copy and the first start of an agent failed ("copy
// preloaded rootfs busybox: ... chmod .../big.bin: no such file or
// directory", or "commit preloaded rootfs busybox: snapshot ...-import-...
// does not exist"; fixed in 1190689). Collections are made to run
// continuously while a larger rootfs is imported.

package faults_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

// collectGarbage makes containerd run a full garbage collection: deleting
// a lease with --sync collects everything unreferenced before answering.
func collectGarbage(namespace string) error {
	ctr := func(args ...string) (string, error) {
		out, err := exec.Command("ctr", append([]string{"--address", testagent.Socket(), "-n", namespace}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	out, err := ctr("leases", "create")
	if err != nil {
		return fmt.Errorf("leases create: %v: %s", err, out)
	}
	id, _, _ := strings.Cut(out, " ") // "<id> <created at>"
	if out, err := ctr("leases", "delete", "--sync", id); err != nil {
		return fmt.Errorf("leases delete: %v: %s", err, out)
	}
	return nil
}

var _ = Describe("containerd garbage collection while an agent imports its preloaded rootfs", func() {
	It("does not fail the first start of any agent", func() {
		const agents = 3
		var failures []string
		for i := range agents {
			agent := newAgent(fmt.Sprintf("ftg%d", i), nil)
			// A larger rootfs keeps the import (a copy) going long enough
			// for a collection to run in the middle of it.
			big, err := os.Create(filepath.Join(agent.Dir, "rootfs", "big.bin"))
			Expect(err).NotTo(HaveOccurred())
			_, err = big.Write(make([]byte, 128<<20))
			Expect(err).NotTo(HaveOccurred())
			Expect(big.Close()).To(Succeed())
			Expect(agent.Start()).To(Succeed())
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer GinkgoRecover()
				for {
					select {
					case <-stop:
						return
					default:
					}
					Expect(collectGarbage(agent.Config.Containerd.Namespace)).To(Succeed())
				}
			}()
			guid := fmt.Sprintf("gc-%d", i)
			_, err = agent.Client.AllocateAndRun(ctx, guid, request())
			Expect(err).NotTo(HaveOccurred())
			c, err := agent.WaitState(guid, executor.StateRunning, 60*time.Second)
			close(stop)
			wg.Wait()
			if err != nil {
				failures = append(failures, fmt.Sprintf("%s: %s", guid, c.RunResult.FailureReason))
			}
			expectNothingOrphaned(agent)
			deleteAllAndExpectEmpty(agent)
			agent.Cleanup()
		}
		Expect(failures).To(BeEmpty())
		tableRow("containerd GC running continuously during the preloaded rootfs import", agents, "nothing")
	})
})
