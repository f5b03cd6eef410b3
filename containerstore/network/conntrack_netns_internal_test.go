package network

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ctTestRules make a fresh namespace track its loopback traffic: a
// "ct state" rule registers conntrack's hooks there; 127.0.0.5:2000 is
// DNATed to 127.0.0.2 (a host port: the address is only in the reply
// tuple); dport 3000 is tracked in zone 7 (a delete must name the zone).
const ctTestRules = `table ip cttest {
	chain raw {
		type filter hook output priority raw; policy accept;
		udp dport 3000 ct zone set 7
	}
	chain out {
		type filter hook output priority filter; policy accept;
		ct state new counter
	}
	chain nat {
		type nat hook output priority -100; policy accept;
		ip daddr 127.0.0.5 udp dport 2000 dnat to 127.0.0.2
	}
}
`

// TestConntrackForgetInNetNS runs Forget against a real conntrack table,
// in a network namespace of its own (never the host's table).
func TestConntrackForgetInNetNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: unshares a network namespace and loads nft rules in it")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft to make the namespace track connections")
	}
	type result struct {
		before, after []string
		first, second int
		err           error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine instead of
		// going back to the pool in the test's namespace.
		runtime.LockOSThread()
		var r result
		r.before, r.after, r.first, r.second, r.err = ctForgetInNewNetNS()
		done <- r
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	want2 := []string{
		"127.0.0.1>127.0.0.2:1000 zone=0",
		"127.0.0.1>127.0.0.2:1001 zone=0",
		"127.0.0.1>127.0.0.2:3000 zone=7",
		"127.0.0.1>127.0.0.5:2000 zone=0",
		"127.0.0.2>127.0.0.4:1000 zone=0",
	}
	want3 := []string{
		"127.0.0.1>127.0.0.3:1000 zone=0",
		"127.0.0.1>127.0.0.3:1001 zone=0",
		"127.0.0.1>127.0.0.3:3000 zone=7",
	}
	if want := slices.Sorted(slices.Values(append(want2, want3...))); !slices.Equal(r.before, want) {
		t.Fatalf("table before Forget:\n%s\nwant:\n%s", strings.Join(r.before, "\n"), strings.Join(want, "\n"))
	}
	if r.first != len(want2) {
		t.Errorf("Forget(127.0.0.2) = %d, want %d", r.first, len(want2))
	}
	if !slices.Equal(r.after, want3) {
		t.Errorf("table after Forget:\n%s\nwant:\n%s", strings.Join(r.after, "\n"), strings.Join(want3, "\n"))
	}
	if r.second != 0 {
		t.Errorf("second Forget(127.0.0.2) = %d, want 0", r.second)
	}
}

// ctForgetInNewNetNS moves the (locked) calling thread into a new network
// namespace, fills its table, and forgets 127.0.0.2 twice.
func ctForgetInNewNetNS() (before, after []string, first, second int, err error) {
	if err = unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, nil, 0, 0, fmt.Errorf("unshare: %w", err)
	}
	// Children forked from this thread start in its namespace.
	for _, args := range [][]string{{"ip", "link", "set", "lo", "up"}, {"nft", "-f", "-"}} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin = strings.NewReader(ctTestRules)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, nil, 0, 0, fmt.Errorf("%v: %w: %s", args, err, out)
		}
	}
	for _, f := range []struct {
		src, dst string
		port     int
	}{
		{"127.0.0.1", "127.0.0.2", 1000}, {"127.0.0.1", "127.0.0.2", 1001}, {"127.0.0.1", "127.0.0.2", 3000},
		{"127.0.0.1", "127.0.0.5", 2000}, {"127.0.0.2", "127.0.0.4", 1000},
		{"127.0.0.1", "127.0.0.3", 1000}, {"127.0.0.1", "127.0.0.3", 1001}, {"127.0.0.1", "127.0.0.3", 3000},
	} {
		if err = ctTestSend(f.src, f.dst, f.port); err != nil {
			return nil, nil, 0, 0, err
		}
	}
	if before, err = ctTestTable(); err != nil {
		return nil, nil, 0, 0, err
	}
	if first, err = (NetlinkConntrack{}).Forget(net.ParseIP("127.0.0.2")); err != nil {
		return before, nil, first, 0, fmt.Errorf("first Forget: %w", err)
	}
	if after, err = ctTestTable(); err != nil {
		return before, nil, first, 0, err
	}
	second, err = NetlinkConntrack{}.Forget(net.ParseIP("127.0.0.2"))
	return before, after, first, second, err
}

// ctTestSend sends one UDP datagram from src to dst:port (nothing listens:
// the entry stays, UNREPLIED, for the UDP timeout).
func ctTestSend(src, dst string, port int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var from, to unix.SockaddrInet4
	copy(from.Addr[:], net.ParseIP(src).To4())
	copy(to.Addr[:], net.ParseIP(dst).To4())
	to.Port = port
	if err := unix.Bind(fd, &from); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	if err := unix.Sendto(fd, []byte("x"), 0, &to); err != nil {
		return fmt.Errorf("send %s>%s:%d: %w", src, dst, port, err)
	}
	return nil
}

// ctTestTable dumps the namespace's IPv4 table, sorted, one
// "src>dst:dport zone=N" of the original tuple per entry.
func ctTestTable() ([]string, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	msgs, err := ctExecute(c, ipctnlMsgCtGet, netlink.Dump, nfgenmsg(unix.AF_INET))
	if err != nil {
		return nil, fmt.Errorf("dump: %w", err)
	}
	var out []string
	for _, m := range msgs {
		e, err := decodeCTEntry(m.Data)
		if err != nil {
			return nil, err
		}
		zone := 0
		if len(e.zone) == 2 {
			zone = int(e.zone[0])<<8 | int(e.zone[1])
		}
		out = append(out, fmt.Sprintf("%v>%v:%d zone=%d", e.desc.src, e.desc.dst, e.desc.dport, zone))
	}
	slices.Sort(out)
	return out, nil
}
