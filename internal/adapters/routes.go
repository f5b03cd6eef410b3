package adapters

import (
	"errors"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/routeemitter"
	"github.com/cellagent/cellagent/routeemitter/routetable"
)

// Routes plugs the route emitter into the container store: routable
// instances are registered, and unregistered before their app is
// signalled.
type Routes struct {
	Emitter *routeemitter.Emitter
	// OnRegister and OnUnregister, when set, count route changes (metrics).
	OnRegister, OnUnregister func()
}

var (
	_ containerstore.RouteHook        = (*Routes)(nil)
	_ containerstore.RequestValidator = (*Routes)(nil)
	_ containerstore.RouteRecoverer   = (*Routes)(nil)
)

// ValidateRequest checks hostnames, ports, the per-route fields, the
// hostname count and the metric tags.
func (h *Routes) ValidateRequest(req *executor.RunRequest) error {
	if err := routeemitter.ValidateRoutes(routesOf(req), req.Ports); err != nil {
		return executor.NewError(executor.ErrInvalidRequest, "routes: %v", err)
	}
	if err := routeemitter.ValidateMetricTags(req.MetricTags); err != nil {
		return executor.NewError(executor.ErrInvalidRequest, "metric_tags: %v", err)
	}
	if err := routeemitter.ValidateInternalRoutes(req.InternalRoutes); err != nil {
		return executor.NewError(executor.ErrInvalidRequest, "internal_routes: %v", err)
	}
	return nil
}

func routesOf(req *executor.RunRequest) []routeemitter.Route {
	routes := make([]routeemitter.Route, 0, len(req.Routes))
	for _, r := range req.Routes {
		rt := routeemitter.Route{Hostnames: r.Hostnames, Port: r.Port, RouteServiceURL: r.RouteServiceURL,
			IsolationSegment: r.IsolationSegment, Protocol: r.Protocol}
		if r.Options != nil {
			rt.Options = &routetable.RouteOptions{LoadBalancing: r.Options.LoadBalancing}
		}
		routes = append(routes, rt)
	}
	return routes
}

// EndpointOf is the route emitter's view of an instance.
func EndpointOf(inst *containerstore.Instance) routeemitter.Endpoint {
	ep := routeemitter.Endpoint{GUID: inst.GUID, LogGUID: inst.Request.LogGUID, Index: inst.Request.Index,
		ExternalIP: inst.ExternalIP, InternalIP: inst.InternalIP}
	for _, p := range inst.Ports {
		ep.Mappings = append(ep.Mappings, routeemitter.Mapping{ContainerPort: p.ContainerPort, HostPort: p.HostPort,
			ContainerTLSPort: p.ContainerTLSProxyPort, HostTLSPort: p.HostTLSProxyPort})
	}
	ep.Routes = routesOf(&inst.Request)
	ep.Tags = routeemitter.ResolveMetricTags(inst.Request.MetricTags, inst.GUID, inst.Request.Index)
	return ep
}

func (h *Routes) Routable(logger lager.Logger, inst *containerstore.Instance) error {
	if len(inst.Request.Routes) == 0 {
		return nil
	}
	if err := h.Emitter.Register(logger, EndpointOf(inst)); err != nil {
		return err
	}
	if h.OnRegister != nil {
		h.OnRegister()
	}
	return nil
}

// Unroutable sends router.unregister now; a disconnected NATS is not an
// error here: the emitter delivers it on reconnect and repeats it.
func (h *Routes) Unroutable(logger lager.Logger, guid string) error {
	had := len(h.Emitter.Registered(guid)) > 0
	err := h.Emitter.Unregister(logger, guid)
	if h.OnUnregister != nil && had && (err == nil || errors.Is(err, routeemitter.ErrNotConnected)) {
		h.OnUnregister()
	}
	if errors.Is(err, routeemitter.ErrNotConnected) {
		logger.Info("unregister-queued-until-nats-reconnects", lager.Data{"container-guid": guid})
		return nil
	}
	return err
}

// Presence answers the store's Deps.Presence over feed: the store's
// figures, as the route emitter publishes them (it reads the feed's
// latest at each presence write).
func Presence(feed *routeemitter.PresenceFeed) func(containerstore.Presence) {
	return func(p containerstore.Presence) {
		feed.Publish(routeemitter.CellPresence{Total: resources(p.Total), Available: resources(p.Available),
			Containers: p.Containers, Evacuating: p.Evacuating})
	}
}

func resources(t executor.ResourceTotals) routeemitter.Resources {
	return routeemitter.Resources{MemoryMB: t.MemoryMB, DiskMB: t.DiskMB, Containers: t.Containers}
}

// RecoverRoutes unregisters journaled routes of containers that are gone.
func (h *Routes) RecoverRoutes(logger lager.Logger, keep func(guid string) bool) error {
	return h.Emitter.Recover(logger, keep)
}
