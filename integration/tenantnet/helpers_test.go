package tenantnet_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

// Names and addresses the suite makes on the host; none leaves the machine.
const (
	netName    = "cellagenttn"
	bridge     = "cellagenttn0"
	subnet     = "10.254.110.0/24"
	gatewayIP  = "10.254.110.1"
	metaNS     = "cattn-meta" // serves the fake metadata endpoint
	metaHostIf = "cattnm0"
	metaIP     = "169.254.169.254"
	outsideNS  = "cattn-out" // a machine on the cell's segment
	outHostIf  = "cattno0"
	outHostIP  = "10.254.112.1"
	// dummyIP is "another host address" than the bridge's (private: denied
	// by default): the host's end of the outside machine's link.
	dummyIP = outHostIP
	outIP   = "10.254.112.2"
	// publicIP is TEST-NET-2: public to the rules, here only in outsideNS.
	publicIP = "198.51.100.7"
)

func sh(args ...string) {
	GinkgoHelper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "%s: %s", strings.Join(args, " "), out)
}

func shQuiet(args ...string) { _ = exec.Command(args[0], args[1:]...).Run() }

// listener accepts TCP connections on addr and remembers their sources.
type listener struct {
	l    net.Listener
	mu   sync.Mutex // guards from
	from []string
}

func listen(addr string) *listener {
	GinkgoHelper()
	l, err := net.Listen("tcp4", addr)
	Expect(err).NotTo(HaveOccurred())
	ln := &listener{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ln.mu.Lock()
			ln.from = append(ln.from, c.RemoteAddr().String())
			ln.mu.Unlock()
			_, _ = c.Write([]byte("connected\n"))
			_ = c.Close()
		}
	}()
	DeferCleanup(l.Close)
	return ln
}

func (l *listener) port() int { return l.l.Addr().(*net.TCPAddr).Port }

func (l *listener) accepted() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.from...)
}

// dial tries a TCP connection from inside network namespace ns (a
// container's or one the suite made; "" is the host) and answers whether
// it connected and got an answer: it sends an HTTP request, which the
// demo app answers and the suite's servers ignore (they greet first).
func dial(ns, ip string, port int) bool {
	args := []string{"busybox", "nc", "-w", "2", ip, fmt.Sprint(port)}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = strings.NewReader("GET / HTTP/1.0\r\n\r\n")
	out, err := cmd.Output()
	return err == nil && len(out) > 0
}

// ping answers whether ip answers one ICMP echo from ns.
func ping(ns, ip string) bool {
	return exec.Command("ip", "netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "2", ip).Run() == nil
}

// putEgress replaces guid's egress rules; it answers the status and body.
func putEgress(api, guid string, body string) (int, string) {
	GinkgoHelper()
	req, err := http.NewRequest(http.MethodPut, api+"/v1/containers/"+guid+"/egress", strings.NewReader(body))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func networkFilter(api, guid string) executor.NetworkFilter {
	GinkgoHelper()
	resp, err := http.Get(api + "/v1/containers/" + guid + "/network")
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	Expect(resp.StatusCode).To(Equal(http.StatusOK))
	var f executor.NetworkFilter
	Expect(json.NewDecoder(resp.Body).Decode(&f)).To(Succeed())
	return f
}

func rulesJSON(rules ...executor.EgressRule) string {
	b, _ := json.Marshal(map[string]any{"egress_rules": rules})
	return string(bytes.TrimSpace(b))
}

// makeMetadata serves a fake metadata endpoint at 169.254.169.254 from a
// namespace of the suite's own, routed from the host through a veth.
func makeMetadata() {
	GinkgoHelper()
	cleanupNS(metaNS, metaHostIf)
	sh("ip", "netns", "add", metaNS)
	sh("ip", "link", "add", metaHostIf, "type", "veth", "peer", "name", "eth0", "netns", metaNS)
	sh("ip", "addr", "add", "169.254.169.1/24", "dev", metaHostIf)
	sh("ip", "link", "set", metaHostIf, "up")
	sh("ip", "-n", metaNS, "addr", "add", metaIP+"/24", "dev", "eth0")
	sh("ip", "-n", metaNS, "link", "set", "eth0", "up")
	sh("ip", "-n", metaNS, "link", "set", "lo", "up")
	sh("ip", "-n", metaNS, "route", "add", "default", "via", "169.254.169.1")
	DeferCleanup(cleanupNS, metaNS, metaHostIf)
	// A server that answers every connection ("-ll -e"), up before the
	// specs dial it.
	srv := exec.Command("ip", "netns", "exec", metaNS, "busybox", "nc", "-ll", "-p", "80", "-e", "/bin/echo", "metadata")
	Expect(srv.Start()).To(Succeed())
	DeferCleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	Eventually(func() bool { return dial("", metaIP, 80) }).WithTimeout(10 * time.Second).Should(BeTrue())
}

// makeOutside makes a namespace standing for another machine on the cell's
// segment that routes the container subnet through the cell.
func makeOutside() {
	GinkgoHelper()
	cleanupNS(outsideNS, outHostIf)
	sh("ip", "netns", "add", outsideNS)
	sh("ip", "link", "add", outHostIf, "type", "veth", "peer", "name", "eth0", "netns", outsideNS)
	sh("ip", "addr", "add", outHostIP+"/30", "dev", outHostIf)
	sh("ip", "link", "set", outHostIf, "up")
	sh("ip", "-n", outsideNS, "addr", "add", outIP+"/30", "dev", "eth0")
	sh("ip", "-n", outsideNS, "link", "set", "eth0", "up")
	sh("ip", "-n", outsideNS, "route", "add", subnet, "via", outHostIP)
	sh("ip", "-n", outsideNS, "route", "add", "default", "via", outHostIP)
	DeferCleanup(cleanupNS, outsideNS, outHostIf)
	// A "public internet" server (a documentation address, routed only
	// to the suite's namespace).
	sh("ip", "-n", outsideNS, "addr", "add", publicIP+"/32", "dev", "eth0")
	sh("ip", "route", "add", publicIP+"/32", "via", outIP)
	DeferCleanup(shQuiet, "ip", "route", "del", publicIP+"/32")
	srv := exec.Command("ip", "netns", "exec", outsideNS, "busybox", "nc", "-ll", "-p", "9000", "-e", "/bin/echo", "public")
	Expect(srv.Start()).To(Succeed())
	DeferCleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	Eventually(func() bool { return dial("", publicIP, 9000) }).WithTimeout(10 * time.Second).Should(BeTrue())
}

func cleanupNS(ns, hostIf string) {
	shQuiet("ip", "link", "del", hostIf)
	shQuiet("ip", "netns", "del", ns)
}

func atoi(s string) int {
	var n int
	_, _ = fmt.Sscan(s, &n)
	return n
}

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// setBrNetfilter sets bridge-nf-call-iptables for one spec (the machine's
// value comes back after it); without br_netfilter loaded, "on" is skipped.
func setBrNetfilter(on bool) {
	GinkgoHelper()
	const path = "/proc/sys/net/bridge/bridge-nf-call-iptables"
	old, err := os.ReadFile(path)
	if err != nil {
		if on {
			Skip("br_netfilter is not loaded on this machine")
		}
		return
	}
	want := map[bool]string{true: "1", false: "0"}[on]
	Expect(os.WriteFile(path, []byte(want), 0o644)).To(Succeed())
	DeferCleanup(os.WriteFile, path, old, os.FileMode(0o644))
}

// dropEgressBlock removes network.egress from an agent config file.
func dropEgressBlock(path string) {
	GinkgoHelper()
	b, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	var cfg map[string]any
	Expect(json.Unmarshal(b, &cfg)).To(Succeed())
	delete(cfg["network"].(map[string]any), "egress")
	b, err = json.Marshal(cfg)
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(path, b, 0o600)).To(Succeed())
}

// eui64LinkLocal is the fe80:: address the kernel gives eth0 in ns (from
// its MAC), whether or not IPv6 is on there.
func eui64LinkLocal(ns string) string {
	GinkgoHelper()
	out, err := exec.Command("ip", "-n", ns, "-o", "link", "show", "dev", "eth0").Output()
	Expect(err).NotTo(HaveOccurred())
	f := strings.Fields(string(out))
	i := slices.Index(f, "link/ether")
	Expect(i).To(BeNumerically(">=", 0), "eth0 of %s has a MAC: %s", ns, out)
	mac, err := net.ParseMAC(f[i+1])
	Expect(err).NotTo(HaveOccurred())
	ip := net.IP{0xfe, 0x80, 0, 0, 0, 0, 0, 0, mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]}
	return ip.String()
}
