package network_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/integration/testagent"
)

// The suite's own network, apart from the agent's default one so that it
// can run beside other tests on the machine.
const (
	netName    = "cellagentit"
	bridgeName = "cellagentit0"
	subnet     = "10.254.200.0/24"
	cniCache   = "/var/lib/cni/results"
)

// hostState is what a test compares before and after: everything a
// container's network may leave behind on the host.
type hostState struct {
	Rules    []string // iptables nat and filter rules, and the containers' part of our nftables table, sorted
	NetNS    []string // our namespaces
	Leases   []string // host-local lease files
	CNICache []string // libcni's cached results for our network
	Links    []string // veths on our bridge
}

func snapshot(dataDir string) hostState {
	var s hostState
	for _, table := range []string{"nat", "filter"} {
		out := mustRun("iptables-save", "-t", table)
		for _, line := range strings.Split(out, "\n") {
			// Rules and chains; not counters or comments.
			if strings.HasPrefix(line, "-A ") || (strings.HasPrefix(line, ":") && !strings.HasPrefix(line, ":INPUT") &&
				!strings.HasPrefix(line, ":OUTPUT") && !strings.HasPrefix(line, ":FORWARD") &&
				!strings.HasPrefix(line, ":PREROUTING") && !strings.HasPrefix(line, ":POSTROUTING")) {
				s.Rules = append(s.Rules, table+" "+strings.Fields(line)[0]+" "+strings.Join(strings.Fields(line)[1:], " "))
			}
		}
	}
	for _, line := range nftTableLines() {
		s.Rules = append(s.Rules, "nft "+line)
	}
	slices.Sort(s.Rules)
	for _, n := range listDir("/var/run/netns") {
		if strings.HasPrefix(n, netName+"-") {
			s.NetNS = append(s.NetNS, n)
		}
	}
	for _, f := range listDir(filepath.Join(dataDir, "network", "ipam", netName)) {
		if net.ParseIP(f) != nil {
			s.Leases = append(s.Leases, f)
		}
	}
	for _, f := range listDir(cniCache) {
		if strings.Contains(f, netName) || strings.HasPrefix(f, "cni-loopback-") {
			s.CNICache = append(s.CNICache, f)
		}
	}
	if _, err := os.Stat("/sys/class/net/" + bridgeName); err == nil {
		s.Links = listDir("/sys/class/net/" + bridgeName + "/brif")
	}
	return s
}

// nftTable is the agent's nftables table for the suite's network.
const nftTable = "cellagent_" + netName

// nftTableLines lists what the table holds for containers (see
// testagent.NFTContainerRules); the shared chains are left out: they stay,
// and a manager with another subnet rewrites them.
func nftTableLines() []string {
	rules, err := testagent.NFTContainerRules(netName)
	Expect(err).NotTo(HaveOccurred())
	var lines []string
	for r := range rules {
		lines = append(lines, r)
	}
	return lines
}

// containerRules lists, sorted, the table's lines that belong to guid.
func containerRules(guid string) []string {
	rules, err := testagent.NFTContainerRules(netName)
	Expect(err).NotTo(HaveOccurred())
	var lines []string
	for r, g := range rules {
		if g == guid {
			lines = append(lines, r)
		}
	}
	slices.Sort(lines)
	return lines
}

// ruleLineCount is `iptables-save | wc -l` over nat and filter plus the
// lines of our nftables table.
func ruleLineCount() int {
	n := 0
	for _, table := range []string{"nat", "filter"} {
		n += strings.Count(mustRun("iptables-save", "-t", table), "\n")
	}
	return n + len(nftTableLines())
}

func listDir(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func mustRun(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "%s %v: %s", name, args, out)
	return string(out)
}

// startHTTPD serves body on port inside the namespace nsName until the
// test ends.
func startHTTPD(nsName string, port uint16, body string) {
	dir := GinkgoT().TempDir()
	Expect(os.WriteFile(filepath.Join(dir, "index.html"), []byte(body), 0o644)).To(Succeed())
	args := []string{"busybox", "httpd", "-f", "-p", fmt.Sprint(port), "-h", dir}
	if nsName != "" {
		args = append([]string{"ip", "netns", "exec", nsName}, args...)
	}
	startProcess(args...)
}

// startProcess runs a command until the test ends.
func startProcess(args ...string) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = GinkgoWriter, GinkgoWriter
	Expect(cmd.Start()).To(Succeed())
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}
	DeferCleanup(stop)
}

// stopProcesses kills what runs in a namespace, as the runtime does before
// the network is torn down.
//
// It waits until each has exited (a zombie or gone), not only until it
// left the namespace: an exiting process leaves its namespaces before its
// last file references are released (the kernel's exit_task_namespaces
// comes before exit_task_work), so for a moment after `ip netns pids`
// stopped listing it, its listening socket still held the port (CI: a
// listen on 8080 right after failed with "address already in use").
func stopProcesses(nsName string) {
	out, _ := exec.Command("ip", "netns", "pids", nsName).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			pids = append(pids, pid)
		}
	}
	Eventually(func() string {
		out, _ := exec.Command("ip", "netns", "pids", nsName).Output()
		return strings.TrimSpace(string(out))
	}).WithTimeout(5 * time.Second).Should(BeEmpty())
	for _, pid := range pids {
		Eventually(func() bool { return exited(pid) }).WithTimeout(5*time.Second).Should(BeTrue(), "process %d exited", pid)
	}
}

// exited says whether pid has gone or is a zombie: its files are closed.
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
	f := strings.Fields(rest)
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// get fetches http://addr/ and returns the body.
func get(addr string) (string, error) {
	resp, err := httpClient.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func hostPort(ip net.IP, port uint16) string {
	return net.JoinHostPort(ip.String(), fmt.Sprint(port))
}

// sweep removes whatever a failed test left: namespaces of our network.
// Manager.CleanupOrphans does the rest in the tests' cleanups.
func sweepNetNS(ctx context.Context) {
	for _, n := range listDir("/var/run/netns") {
		if strings.HasPrefix(n, netName+"-") {
			_ = exec.CommandContext(ctx, "ip", "netns", "delete", n).Run()
		}
	}
}

// closeFirstIn listens on port inside the namespace nsName (a socket made
// from a thread that enters it, which comes back), takes one connection
// from the host and closes it first, so that the namespace keeps a TCP
// socket in TIME_WAIT on that port and nothing else.
func closeFirstIn(nsName string, ip net.IP, port uint16) {
	GinkgoHelper()
	lc := make(chan net.Listener, 1)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked if it cannot come back: the thread ends
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer own.Close()
		target, err := os.Open("/var/run/netns/" + nsName)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		l, lerr := net.Listen("tcp4", hostPort(ip, port))
		if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		runtime.UnlockOSThread()
		if lerr != nil {
			errc <- lerr
			return
		}
		lc <- l
	}()
	var l net.Listener
	select {
	case err := <-errc:
		Fail(err.Error())
	case l = <-lc:
	}
	defer l.Close()
	client, err := net.Dial("tcp4", hostPort(ip, port))
	Expect(err).NotTo(HaveOccurred())
	defer client.Close()
	server, err := l.Accept()
	Expect(err).NotTo(HaveOccurred())
	Expect(server.Close()).To(Succeed())
	_, err = client.Read(make([]byte, 1))
	Expect(err).To(MatchError(io.EOF), "the server side closed first")
	Expect(client.Close()).To(Succeed())
	Expect(l.Close()).To(Succeed())
	local := fmt.Sprintf(":%04X ", port)
	Eventually(func() string {
		out, _ := exec.Command("ip", "netns", "exec", nsName, "cat", "/proc/net/tcp").Output()
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 3 && strings.Contains(f[1]+" ", local) {
				return f[3]
			}
		}
		return ""
	}).Should(Equal("06"), "TIME_WAIT on port %d", port)
}
