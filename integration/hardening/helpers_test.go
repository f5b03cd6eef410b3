package hardening_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

// startAgent starts an agent (host network, proxy off unless modify says
// otherwise) that is cleaned up when the spec ends.
func startAgent(prefix string, modify func(*config.Config)) *testagent.Agent {
	agent, err := testagent.New(GinkgoT().TempDir(), fmt.Sprintf("%s%d", prefix, time.Now().UnixNano()%100000), modify)
	Expect(err).NotTo(HaveOccurred())
	Expect(agent.Start()).To(Succeed())
	DeferCleanup(func() {
		agent.Cleanup()
		if CurrentSpecReport().Failed() {
			log := agent.LogText()
			if len(log) > 40000 {
				log = log[len(log)-40000:]
			}
			GinkgoWriter.Println(log)
		}
	})
	return agent
}

// demoApp is a run request for the demo app on port.
func demoApp(port int) executor.RunRequest {
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
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}

// taskPids answers the host pids of guid's task's processes.
func taskPids(agent *testagent.Agent, guid string) []string {
	GinkgoHelper()
	out, err := exec.Command("ctr", "--address", testagent.Socket(), "-n", agent.Config.Containerd.Namespace, "tasks", "ps", guid).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	var pids []string
	for _, line := range strings.Split(string(out), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 0 {
			pids = append(pids, f[0])
		}
	}
	return pids
}

// status is /proc/PID/status.
func status(pid string) string {
	b, _ := os.ReadFile("/proc/" + pid + "/status")
	return string(b)
}

func statusField(st, name string) string {
	m := regexp.MustCompile(`(?m)^` + name + `:\s+(.*)$`).FindStringSubmatch(st)
	if m == nil {
		return ""
	}
	return strings.Fields(m[1])[0]
}

// pidsCgroup answers the pids cgroup directory of a host pid (v1 or v2).
func pidsCgroup(pid string) string {
	GinkgoHelper()
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	Expect(err).NotTo(HaveOccurred())
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[1] == "pids" || strings.Contains(","+f[1]+",", ",pids,") {
			return filepath.Join("/sys/fs/cgroup", f[1], f[2])
		}
		if f[0] == "0" && f[1] == "" {
			return filepath.Join("/sys/fs/cgroup", f[2])
		}
	}
	Fail("no pids cgroup for " + pid)
	return ""
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}
