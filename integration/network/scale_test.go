package network_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
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

// BenchmarkLinkScale measures one more container's filter and host port
// (Filter+Map, then Unmap+Unfilter) in a table that already holds N
// containers (in a network namespace of its own: see inOwnNetNS).
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
		for ; have < size; have++ {
			if err := up(have); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("N=%d", size), func(b *testing.B) {
			var ups, downs []time.Duration
			unmaps = nil
			for b.Loop() {
				start := time.Now()
				if err := up(900); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if err := down(900); err != nil {
					b.Fatal(err)
				}
				ups, downs = append(ups, mid.Sub(start)), append(downs, time.Since(mid))
			}
			b.ReportMetric(medianMS(ups), "setup-median-ms")
			b.ReportMetric(medianMS(downs), "teardown-median-ms")
			b.ReportMetric(medianMS(unmaps), "unmap-median-ms")
		})
	}
}
