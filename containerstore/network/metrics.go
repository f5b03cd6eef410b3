package network

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var descDenied = prometheus.NewDesc("cellagent_network_denied_total",
	"Packets the network filter dropped, by container and direction (egress: from it; ingress: to it).",
	[]string{"guid", "direction"}, nil)

// DeniedCollector exports the filter's denial counters, read from the
// nftables table at each scrape (netlink dumps, no fork/exec).
type DeniedCollector struct {
	Manager *Manager
}

var _ prometheus.Collector = DeniedCollector{}

func (c DeniedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descDenied }

func (c DeniedCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	denied, err := c.Manager.Denied(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descDenied, err)
		return
	}
	for guid, dirs := range denied {
		for dir, n := range dirs {
			ch <- prometheus.MustNewConstMetric(descDenied, prometheus.CounterValue, float64(n), guid, dir)
		}
	}
}
