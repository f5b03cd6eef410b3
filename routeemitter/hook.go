package routeemitter

import (
	"errors"
	"fmt"
	"strings"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/routeemitter/routetable"
)

// Hook plugs the Emitter into the container store: routable instances are
// registered, and unregistered before their app is signalled.
type Hook struct {
	Emitter *Emitter
	// OnRegister and OnUnregister, when set, count route changes (metrics).
	OnRegister, OnUnregister func()
}

var (
	_ containerstore.RouteHook        = (*Hook)(nil)
	_ containerstore.RequestValidator = (*Hook)(nil)
	_ containerstore.RouteRecoverer   = (*Hook)(nil)
)

// ValidateRequest checks hostnames, ports, the per-route fields, the
// hostname count and the metric tags.
func (h *Hook) ValidateRequest(req *executor.RunRequest) error {
	if err := ValidateRoutes(routesOf(req), req.Ports); err != nil {
		return executor.NewError(executor.ErrInvalidRequest, "routes: %v", err)
	}
	if err := ValidateMetricTags(req.MetricTags); err != nil {
		return executor.NewError(executor.ErrInvalidRequest, "metric_tags: %v", err)
	}
	if err := ValidateInternalRoutes(req.InternalRoutes); err != nil {
		return executor.NewError(executor.ErrInvalidRequest, "internal_routes: %v", err)
	}
	return nil
}

// ValidateInternalRoutes checks internal route hostnames: DNS names (no
// path), at most MaxHostnames.
func ValidateInternalRoutes(routes []executor.InternalRoute) error {
	var errs []error
	if len(routes) > MaxHostnames {
		errs = append(errs, fmt.Errorf("%w: %d internal routes, at most %d allowed", ErrInvalidRoute, len(routes), MaxHostnames))
	}
	for i, r := range routes {
		if err := validateHost(r.Hostname); err != nil || strings.HasPrefix(r.Hostname, "*.") {
			errs = append(errs, fmt.Errorf("%w: internal route %d: hostname %q must be a DNS name without wildcard or path", ErrInvalidRoute, i, r.Hostname))
		}
		if len(errs) >= maxReportedErrors {
			break
		}
	}
	return errors.Join(errs...)
}

func routesOf(req *executor.RunRequest) []Route {
	routes := make([]Route, 0, len(req.Routes))
	for _, r := range req.Routes {
		rt := Route{Hostnames: r.Hostnames, Port: r.Port, RouteServiceURL: r.RouteServiceURL,
			IsolationSegment: r.IsolationSegment, Protocol: r.Protocol}
		if r.Options != nil {
			rt.Options = &routetable.RouteOptions{LoadBalancing: r.Options.LoadBalancing}
		}
		routes = append(routes, rt)
	}
	return routes
}

// EndpointOf is the route emitter's view of an instance.
func EndpointOf(inst *containerstore.Instance) Endpoint {
	ep := Endpoint{GUID: inst.GUID, LogGUID: inst.Request.LogGUID, Index: inst.Request.Index,
		ExternalIP: inst.ExternalIP, InternalIP: inst.InternalIP}
	for _, p := range inst.Ports {
		ep.Mappings = append(ep.Mappings, Mapping{ContainerPort: p.ContainerPort, HostPort: p.HostPort,
			ContainerTLSPort: p.ContainerTLSProxyPort, HostTLSPort: p.HostTLSProxyPort})
	}
	ep.Routes = routesOf(&inst.Request)
	ep.Tags = ResolveMetricTags(inst.Request.MetricTags, inst.GUID, inst.Request.Index)
	return ep
}

func (h *Hook) Routable(logger lager.Logger, inst *containerstore.Instance) error {
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
func (h *Hook) Unroutable(logger lager.Logger, guid string) error {
	had := len(h.Emitter.Registered(guid)) > 0
	err := h.Emitter.Unregister(logger, guid)
	if h.OnUnregister != nil && had && (err == nil || errors.Is(err, ErrNotConnected)) {
		h.OnUnregister()
	}
	if errors.Is(err, ErrNotConnected) {
		logger.Info("unregister-queued-until-nats-reconnects", lager.Data{"container-guid": guid})
		return nil
	}
	return err
}

// RecoverRoutes unregisters journaled routes of containers that are gone.
func (h *Hook) RecoverRoutes(logger lager.Logger, keep func(guid string) bool) error {
	return h.Emitter.Recover(logger, keep)
}
