package network_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/containerstore/network"
)

// BenchmarkSetupTeardown measures one container's Setup+Teardown with one
// port in bridge and host mode, and reports the median as well as the mean:
//
//	CELLAGENT_INTEGRATION=1 go test -run '^$' -bench SetupTeardown -benchtime 20x ./integration/network/
func BenchmarkSetupTeardown(b *testing.B) {
	if !integrationEnabled() {
		b.Skip("set CELLAGENT_INTEGRATION=1 (as root)")
	}
	if why := hostReady(); why != "" {
		b.Fatal(why)
	}
	_, err := os.Stat("/sys/class/net/" + bridgeName)
	hadBridge := err == nil
	hadTable := exec.Command("nft", "list", "table", "ip", nftTable).Run() == nil
	b.Cleanup(func() {
		if !hadBridge {
			_ = exec.Command("ip", "link", "delete", bridgeName).Run()
		}
		if !hadTable {
			_ = exec.Command("nft", "delete", "table", "ip", nftTable).Run()
		}
	})

	// bridge-unfiltered is bridge mode without the tenant filter (what
	// starts cost before it), for the filter's share in the same run.
	for _, mode := range []string{network.ModeBridge, "bridge-unfiltered", network.ModeHost} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			logger := lager.NewLogger("bench") // no sink: measure the work, not the logging
			cfg := testConfig(b.TempDir(), 0)
			cfg.Mode = mode
			var deps network.Deps
			if mode == "bridge-unfiltered" {
				cfg.Mode = network.ModeBridge
				deps.HostPorts = unfiltered{network.NFTables{Network: cfg.NetworkName, Subnet: cfg.Subnet, Bridge: cfg.BridgeName}}
			}
			m, err := network.NewWithDeps(logger, cfg, deps)
			if err != nil {
				b.Fatal(err)
			}
			// One untimed round so the bridge and the shared chains exist.
			if _, err := m.Setup(ctx, logger, "bench-warm", []uint16{8080}); err != nil {
				b.Fatal(err)
			}
			if err := m.Teardown(ctx, logger, "bench-warm"); err != nil {
				b.Fatal(err)
			}
			var took, setups []time.Duration
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				guid := fmt.Sprintf("bench-%d", i)
				start := time.Now()
				if _, err := m.Setup(ctx, logger, guid, []uint16{8080}); err != nil {
					b.Fatal(err)
				}
				setups = append(setups, time.Since(start))
				if err := m.Teardown(ctx, logger, guid); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			b.ReportMetric(medianMS(took), "median-ms")
			b.ReportMetric(medianMS(setups), "setup-median-ms")
		})
	}
}

// unfiltered maps host ports but installs no filter.
type unfiltered struct{ network.NFTables }

func (unfiltered) Filter(context.Context, string, net.IP, network.FilterSpec) error { return nil }
func (unfiltered) Unfilter(context.Context, string) error                           { return nil }

func medianMS(d []time.Duration) float64 {
	slices.Sort(d)
	return float64(d[len(d)/2].Microseconds()) / 1000
}
