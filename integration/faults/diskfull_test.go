package faults_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

// fill writes into dir until the file system answers ENOSPC and answers
// the file it wrote.
func fill(dir string) string {
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	buf := make([]byte, 4096)
	for range 1 << 16 {
		if _, err := f.Write(buf); err != nil {
			Expect(errors.Is(err, syscall.ENOSPC)).To(BeTrue(), "filling %s: %v", dir, err)
			return path
		}
	}
	Fail("the tmpfs did not fill up")
	return ""
}

var _ = Describe("data_dir full while writing credentials", func() {
	It("fails the new instance cleanly with the write error, leaves no partial files and keeps the others running", func() {
		agent := newAgent("ftd", nil)
		credDir := filepath.Join(agent.Config.DataDir, "credentials")
		Expect(os.MkdirAll(credDir, 0o711)).To(Succeed())
		out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=0711", "tmpfs", credDir).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		// Registered after the agent's cleanup, so it runs after it.
		DeferCleanup(func() {
			out, err := exec.Command("umount", credDir).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(out))
		})
		Expect(agent.Start()).To(Succeed())

		before := runRoutable(agent, "df-1", request("df-1.example.com"))
		filler := fill(credDir)

		By("an instance started on the full file system completes with the reason")
		_, err = agent.Client.AllocateAndRun(ctx, "df-2", request("df-2.example.com"))
		Expect(err).NotTo(HaveOccurred())
		c, err := agent.WaitState("df-2", executor.StateCompleted, 60*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.RunResult.Failed).To(BeTrue())
		Expect(c.RunResult.FailureReason).To(SatisfyAll(ContainSubstring("credentials"), ContainSubstring("no space left on device")))
		Expect(c.Routable).To(BeFalse())
		GinkgoWriter.Printf("df-2: %s\n", c.RunResult.FailureReason)

		By("no partial credential files")
		var files []string
		_ = filepath.WalkDir(filepath.Join(credDir, "df-2"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, p)
			}
			return nil
		})
		Expect(files).To(BeEmpty())

		By("the instance started before keeps running and serving")
		Consistently(func(g Gomega) {
			c, err := agent.Client.Get(ctx, "df-1")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(c.State).To(Equal(executor.StateRunning))
			g.Expect(c.Routable).To(BeTrue())
		}, 2*time.Second, 200*time.Millisecond).Should(Succeed())
		answers(before)

		By("with space again, the next start works")
		Expect(os.Remove(filler)).To(Succeed())
		runRoutable(agent, "df-3", request("df-3.example.com"))

		expectNothingOrphaned(agent)
		deleteAllAndExpectEmpty(agent)
		tableRow("credentials file system full at issuance (64k tmpfs)", 1,
			fmt.Sprintf("nothing: the new instance failed with %q, no partial files, the running one kept serving", "no space left on device"))
	})
})
