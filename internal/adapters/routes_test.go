package adapters_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/adapters"
	"github.com/cellagent/cellagent/routeemitter"
	"github.com/cellagent/cellagent/routeemitter/routetable"
)

var _ = Describe("Routes", func() {
	req := func() executor.RunRequest {
		return executor.RunRequest{
			Index: 2,
			Ports: []uint16{8080},
			Routes: []executor.Route{{Hostnames: []string{"a.example.com"}, Port: 8080,
				RouteServiceURL: "https://rs.example.com", IsolationSegment: "iso-1", Protocol: "http2",
				Options: &executor.RouteOptions{LoadBalancing: "least-connection"}}},
			MetricTags:     map[string]executor.MetricTagValue{"app": {Static: "web"}, "index": {Dynamic: "index"}},
			InternalRoutes: []executor.InternalRoute{{Hostname: "app.apps.internal"}},
		}
	}

	It("carries a run request's per-route fields and metric tags into the endpoint", func() {
		inst := &containerstore.Instance{GUID: "g1", Request: req(), ExternalIP: "10.0.0.5",
			Ports: []executor.PortMapping{{ContainerPort: 8080, HostPort: 40001}}}
		ep := adapters.EndpointOf(inst)
		Expect(ep.Routes).To(Equal([]routeemitter.Route{{Hostnames: []string{"a.example.com"}, Port: 8080,
			RouteServiceURL: "https://rs.example.com", IsolationSegment: "iso-1", Protocol: "http2",
			Options: &routetable.RouteOptions{LoadBalancing: "least-connection"}}}))
		Expect(ep.Tags).To(Equal(map[string]string{"app": "web", "index": "2"}))
	})

	DescribeTable("refuses malformed route fields and metric tags as InvalidRequest",
		func(modify func(*executor.RunRequest), problem string) {
			r := req()
			Expect((&adapters.Routes{}).ValidateRequest(&r)).To(Succeed())
			modify(&r)
			err := (&adapters.Routes{}).ValidateRequest(&r)
			Expect(err).To(MatchError(executor.ErrInvalidRequest))
			Expect(err).To(MatchError(ContainSubstring(problem)))
		},
		Entry("http route service", func(r *executor.RunRequest) { r.Routes[0].RouteServiceURL = "http://rs.example.com" }, "route_service_url"),
		Entry("protocol", func(r *executor.RunRequest) { r.Routes[0].Protocol = "http3" }, "protocol"),
		Entry("load balancing", func(r *executor.RunRequest) { r.Routes[0].Options.LoadBalancing = "hash" }, "loadbalancing"),
		Entry("metric tag", func(r *executor.RunRequest) { r.MetricTags["x"] = executor.MetricTagValue{} }, "metric_tags"),
		Entry("internal route with a path", func(r *executor.RunRequest) {
			r.InternalRoutes = []executor.InternalRoute{{Hostname: "app.apps.internal/x"}}
		}, "internal_routes"),
		Entry("wildcard internal route", func(r *executor.RunRequest) {
			r.InternalRoutes = []executor.InternalRoute{{Hostname: "*.apps.internal"}}
		}, "internal_routes"),
	)
})

var _ = Describe("Presence", func() {
	It("puts the store's figures in the route emitter's feed", func() {
		feed := routeemitter.NewPresenceFeed()
		adapters.Presence(feed)(containerstore.Presence{
			Total:      executor.ResourceTotals{MemoryMB: 1024, DiskMB: 4096, Containers: 4},
			Available:  executor.ResourceTotals{MemoryMB: 864, DiskMB: 4086, Containers: 3},
			Containers: 1, Evacuating: true,
		})
		Expect(feed.Latest()).To(Equal(routeemitter.CellPresence{
			Total:      routeemitter.Resources{MemoryMB: 1024, DiskMB: 4096, Containers: 4},
			Available:  routeemitter.Resources{MemoryMB: 864, DiskMB: 4086, Containers: 3},
			Containers: 1, Evacuating: true,
		}))
	})
})
