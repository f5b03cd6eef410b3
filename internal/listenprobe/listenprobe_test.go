package listenprobe_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/internal/listenprobe"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func open(t *testing.T, path string) *listenprobe.Probe {
	t.Helper()
	p, err := listenprobe.Open(path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func listening(t *testing.T, p *listenprobe.Probe, ip netip.Addr, port uint16) bool {
	t.Helper()
	ok, err := p.Listening(ip, port)
	if err != nil {
		t.Fatalf("Listening(%v, %d): %v", ip, port, err)
	}
	return ok
}

func portOf(l net.Listener) uint16 { return uint16(l.Addr().(*net.TCPAddr).Port) }

// The answer follows the listener: there while it listens, gone once it
// closed, and a connect agrees each time.
func TestListeningFollowsTheListener(t *testing.T) {
	p := open(t, "")
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := portOf(l)
	if !listening(t, p, loopback, port) {
		t.Errorf("127.0.0.1:%d listens, the probe says not", port)
	}
	l.Close()
	if listening(t, p, loopback, port) {
		t.Errorf("127.0.0.1:%d closed, the probe says it listens", port)
	}
	if c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		c.Close()
		t.Errorf("a connect to the closed port succeeded: the test's premise is wrong")
	}
}

// A listener bound to one address does not answer for another; one bound
// to every address, or an IPv6 socket that takes IPv4 too (Go's ":port"),
// answers for any.
func TestListeningMatchesAsAConnectWould(t *testing.T) {
	p := open(t, "")
	other := netip.MustParseAddr("127.0.0.2")

	one, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if listening(t, p, other, portOf(one)) {
		t.Errorf("a listener on 127.0.0.1 answers for 127.0.0.2")
	}

	any4, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer any4.Close()
	if !listening(t, p, other, portOf(any4)) {
		t.Errorf("a listener on 0.0.0.0 does not answer for 127.0.0.2")
	}

	dual, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Skipf("no dual-stack listener here: %v", err)
	}
	defer dual.Close()
	if dual.Addr().(*net.TCPAddr).IP.To4() != nil {
		t.Skip("no IPv6 here: Go listened on an IPv4 socket, not a dual-stack one")
	}
	if !listening(t, p, loopback, portOf(dual)) {
		t.Errorf("a dual-stack listener on [::] does not answer for 127.0.0.1")
	}
}

// The caller's own namespace by path needs no thread of its own, so no
// privilege either.
func TestOpenTakesTheCallersOwnNamespaceByPath(t *testing.T) {
	p := open(t, "/proc/self/ns/net")
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !listening(t, p, loopback, portOf(l)) {
		t.Errorf("a probe opened at /proc/self/ns/net does not see this namespace's listener")
	}
}

func TestListeningRefusesWhatItCannotAnswer(t *testing.T) {
	p := open(t, "")
	if _, err := p.Listening(netip.MustParseAddr("::1"), 80); err == nil {
		t.Errorf("an IPv6 address was taken")
	}
	p.Close()
	if _, err := p.Listening(loopback, 80); err == nil {
		t.Errorf("a closed probe answered")
	}
	if _, err := listenprobe.Open("/nonexistent/netns"); err == nil {
		t.Errorf("a missing namespace path was opened")
	}
}

// A probe opened at a namespace's path sees that namespace's listeners,
// not the caller's.
func TestOpenAnswersForTheNamespaceAtPath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: entering another network namespace")
	}
	ready := make(chan error, 1)
	release := make(chan struct{})
	var nsPath string
	var port uint16
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- err
			return
		}
		// Loopback is down in a new namespace: the wildcard address can
		// be bound, and answers for 127.0.0.1 all the same.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			err = unix.Bind(fd, &unix.SockaddrInet4{})
		}
		if err == nil {
			err = unix.Listen(fd, 1)
		}
		if err == nil {
			var sa unix.Sockaddr
			sa, err = unix.Getsockname(fd)
			port = uint16(sa.(*unix.SockaddrInet4).Port)
		}
		nsPath = fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		ready <- err
		<-release
		unix.Close(fd)
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	defer close(release)

	inside := open(t, nsPath)
	if !listening(t, inside, loopback, port) {
		t.Errorf("the namespace's listener on port %d is not seen from a probe opened at %s", port, nsPath)
	}
	host := open(t, "")
	if listening(t, host, loopback, port) {
		// Possible only if the host listens on that very port too.
		if c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			t.Skipf("the host listens on port %d as well", port)
		}
		t.Errorf("the host's probe sees the other namespace's listener on port %d", port)
	}
}

// BenchmarkListening against BenchmarkRefusedConnect: the cost of one try
// while nothing listens, the probe's way and a connect's way.
func BenchmarkListening(b *testing.B) {
	p, err := listenprobe.Open("")
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	port := closedPort(b)
	for b.Loop() {
		if ok, err := p.Listening(loopback, port); ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkRefusedConnect(b *testing.B) {
	addr := fmt.Sprintf("127.0.0.1:%d", closedPort(b))
	for b.Loop() {
		if c, err := net.Dial("tcp4", addr); err == nil {
			c.Close()
			b.Fatal("connected")
		}
	}
}

func closedPort(b *testing.B) uint16 {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := portOf(l)
	l.Close()
	return port
}
