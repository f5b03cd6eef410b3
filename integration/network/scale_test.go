package network_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cellagent/cellagent/containerstore/network"
)

// inOwnNetNS skips tb unless it runs as root in a network namespace of its
// own (the table and the bridge below are made there, not in the host's):
//
//	unshare -nm sh -c 'mount -t sysfs sysfs /sys && ip link add scalebr0 type bridge &&
//	  CELLAGENT_SCALE_BENCH=1 go test -run Scale -bench LinkScale ./integration/network/'
func inOwnNetNS(tb testing.TB) network.NFTables {
	if os.Getenv("CELLAGENT_SCALE_BENCH") != "1" || os.Geteuid() != 0 {
		tb.Skip("set CELLAGENT_SCALE_BENCH=1 and run as root in a network namespace of its own")
	}
	n := network.NFTables{Network: "scale", Subnet: "10.90.0.0/16", Bridge: "scalebr0"}
	if err := n.Init(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestScaleFilterKeepsCounters: Filter adds its counters without asking
// which exist; one that exists keeps its packets.
func TestScaleFilterKeepsCounters(t *testing.T) {
	n := inOwnNetNS(t)
	ctx := context.Background()
	ip := net.IPv4(10, 90, 9, 9)
	if out, err := exec.Command("nft", "add", "counter", "ip", "cellagent_scale", "e_keep", "packets", "7", "bytes", "700").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for range 2 {
		if err := n.Filter(ctx, "keep", ip, network.FilterSpec{}); err != nil {
			t.Fatal(err)
		}
		denied, err := n.Denied(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := denied["keep"][network.DirEgress]; got != 7 {
			t.Fatalf("egress denied %d after Filter, want the 7 the counter held", got)
		}
	}
	if err := n.Unfilter(ctx, "keep"); err != nil {
		t.Fatal(err)
	}
}

// TestScaleFilterReplacesElements: the egress and ingress elements of an
// address are read one by one (not dumped), and replaced when they lead to
// another guid's chains (that guid was not cleaned up) or carry another
// mark (the same guid filtered again with other rules).
func TestScaleFilterReplacesElements(t *testing.T) {
	n := inOwnNetNS(t)
	ctx := context.Background()
	ip := net.IPv4(10, 90, 9, 10)
	markOf := func(guid string) string {
		t.Helper()
		held, err := n.Held(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return held[guid].FilterMark
	}
	first := network.FilterSpec{LogGUID: "a"}
	if err := n.Filter(ctx, "old", ip, first); err != nil {
		t.Fatal(err)
	}
	oldMark := markOf("old")
	if oldMark == "" {
		t.Fatal("old's elements carry no mark")
	}
	if err := n.Filter(ctx, "new", ip, first); err != nil {
		t.Fatalf("filter of an address whose elements lead to another guid: %v", err)
	}
	newMark := markOf("new")
	if newMark == "" || newMark == oldMark {
		t.Fatalf("new's mark %q (old's was %q): want one of its own", newMark, oldMark)
	}
	if got := markOf("old"); got != "" {
		t.Fatalf("old still holds the address's elements (mark %q)", got)
	}
	if err := n.Filter(ctx, "new", ip, network.FilterSpec{LogGUID: "b"}); err != nil {
		t.Fatal(err)
	}
	if got := markOf("new"); got == "" || got == newMark {
		t.Fatalf("new's mark after a Filter with other rules %q, want a new one (was %q)", got, newMark)
	}
	for _, g := range []string{"old", "new"} {
		if err := n.Unfilter(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkLinkScale measures one more container's filter and host port
// (Filter+Map, then Unmap+Unfilter) in a table that already holds N
// containers, with N ports on the bridge and one more for the new one, as
// a start finds them (in a network namespace of its own: see inOwnNetNS).
func BenchmarkLinkScale(b *testing.B) {
	n := inOwnNetNS(b)
	ctx := context.Background()
	var unmaps []time.Duration
	ip := func(i int) net.IP { return net.IPv4(10, 90, byte(1+i/250), byte(1+i%250)) }
	up := func(i int) error {
		guid := "scale-" + strconv.Itoa(i)
		if err := n.Filter(ctx, guid, ip(i), network.FilterSpec{LogGUID: fmt.Sprintf("app-%d", i%50)}); err != nil {
			return err
		}
		return n.Map(ctx, guid, ip(i), []network.PortMapping{{ContainerPort: 8080, HostPort: uint16(40000 + i)}})
	}
	down := func(i int) error {
		guid := "scale-" + strconv.Itoa(i)
		t0 := time.Now()
		if err := n.Unmap(ctx, guid, []uint16{uint16(40000 + i)}); err != nil {
			return err
		}
		unmaps = append(unmaps, time.Since(t0))
		return n.Unfilter(ctx, guid)
	}
	have := 0
	for _, size := range []int{0, 250, 500} {
		if err := bridgePorts(have, size); err != nil {
			b.Fatal(err)
		}
		for ; have < size; have++ {
			if err := up(have); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("N=%d", size), func(b *testing.B) {
			var ups, downs []time.Duration
			unmaps = nil
			for b.Loop() {
				b.StopTimer()
				if err := bridgePorts(900, 901); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				if err := up(900); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if err := down(900); err != nil {
					b.Fatal(err)
				}
				ups, downs = append(ups, mid.Sub(start)), append(downs, time.Since(mid))
				b.StopTimer()
				if err := exec.Command("ip", "link", "del", "sp900").Run(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(medianMS(ups), "setup-median-ms")
			b.ReportMetric(medianMS(downs), "teardown-median-ms")
			b.ReportMetric(medianMS(unmaps), "unmap-median-ms")
		})
	}
}

// bridgePorts adds veth pairs sp<from>..sp<to-1> (peers sq<i>) as ports of
// the bench's bridge, in one ip run.
func bridgePorts(from, to int) error {
	var script strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&script, "link add sp%d master scalebr0 type veth peer name sq%d\n", i, i)
	}
	if script.Len() == 0 {
		return nil
	}
	cmd := exec.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(script.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -batch: %v: %s", err, out)
	}
	return nil
}
