package faults_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

// mountsAt counts the mounts whose mount point is dir.
func mountsAt(dir string) int {
	f, err := os.Open("/proc/self/mountinfo")
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == dir {
			n++
		}
	}
	return n
}

func expectSecretTmpfs(agent *testagent.Agent) {
	for _, name := range []string{"credentials", "proxy"} {
		dir := filepath.Join(agent.Config.DataDir, name)
		var st unix.Statfs_t
		Expect(unix.Statfs(dir, &st)).To(Succeed())
		Expect(st.Type).To(Equal(int64(unix.TMPFS_MAGIC)), "%s is not a tmpfs", dir)
		Expect(mountsAt(dir)).To(Equal(1), "mounts at %s", dir)
	}
}

var _ = Describe("identity.tmpfs: instance keys on a tmpfs", func() {
	It("serves from it, keeps it across kill -9 (adopting the same credentials) and starts anew after the files are gone with the containers", func() {
		agent := startAgent("fts", func(c *config.Config) { c.Identity.Tmpfs = true })
		DeferCleanup(agent.ReleaseSecretDirs) // after the deletes of newAgent's cleanup

		By("an instance's credentials and proxy files are on the agent's tmpfs mounts")
		c := runRoutable(agent, "tf-0", request("tf-0.example.com"))
		expectSecretTmpfs(agent)
		Expect(filepath.Join(agent.Config.DataDir, "credentials", "tf-0", "instance.key")).To(BeAnExistingFile())
		Expect(c.Credentials).NotTo(BeNil())
		serial := c.Credentials.Serial

		By("kill -9 and restart: one mount each still, the same credential adopted")
		agent.Kill9()
		Expect(agent.Start()).To(Succeed())
		Eventually(func() bool { c, _ = agent.Client.Get(ctx, "tf-0"); return c.Routable }, 30*time.Second, 100*time.Millisecond).
			Should(BeTrue(), "tf-0 routable after the restart")
		Expect(c.State).To(Equal(executor.StateRunning))
		Expect(c.Credentials.Serial).To(Equal(serial), "adopted, not reissued")
		expectSecretTmpfs(agent)
		answers(c)

		By("a host reboot: the agent killed, the task gone, the tmpfs gone")
		agent.Kill9()
		ns := agent.Config.Containerd.Namespace
		out, err := exec.Command("ctr", "--address", testagent.Socket(), "-n", ns, "task", "kill", "-s", "SIGKILL", "tf-0").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Eventually(func() string {
			out, _ := exec.Command("ctr", "--address", testagent.Socket(), "-n", ns, "task", "ls").CombinedOutput()
			return string(out)
		}, 30*time.Second, 100*time.Millisecond).Should(Or(Not(ContainSubstring("tf-0")), MatchRegexp(`tf-0\s+\d+\s+STOPPED`)))
		for _, name := range []string{"credentials", "proxy"} {
			Expect(unix.Unmount(filepath.Join(agent.Config.DataDir, name), unix.MNT_DETACH)).To(Succeed())
		}

		By("the restarted agent completes the lost instance, mounts fresh tmpfs and issues new credentials")
		Expect(agent.Start()).To(Succeed())
		lost, err := agent.WaitState("tf-0", executor.StateCompleted, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(lost.RunResult.Failed).To(BeTrue())
		expectSecretTmpfs(agent)
		c1 := runRoutable(agent, "tf-1", request("tf-1.example.com"))
		Expect(c1.Credentials.Serial).NotTo(Equal(serial))
		Expect(filepath.Join(agent.Config.DataDir, "credentials", "tf-1", "instance.key")).To(BeAnExistingFile())
		answers(c1)
	})
})
