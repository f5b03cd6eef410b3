package routeemitter

import (
	"errors"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/executor"
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

// ValidateRequest checks hostnames, ports and the hostname count.
func (h *Hook) ValidateRequest(req *executor.RunRequest) error {
	routes := make([]Route, 0, len(req.Routes))
	for _, r := range req.Routes {
		routes = append(routes, Route{Hostnames: r.Hostnames, Port: r.Port})
	}
	if err := ValidateRoutes(routes, req.Ports); err != nil {
		return executor.NewError(executor.ErrInvalidRequest, "routes: %v", err)
	}
	return nil
}

// EndpointOf is the route emitter's view of an instance.
func EndpointOf(inst *containerstore.Instance) Endpoint {
	ep := Endpoint{GUID: inst.GUID, LogGUID: inst.Request.LogGUID, Index: inst.Request.Index,
		ExternalIP: inst.ExternalIP, InternalIP: inst.InternalIP}
	for _, p := range inst.Ports {
		ep.Mappings = append(ep.Mappings, Mapping{ContainerPort: p.ContainerPort, HostPort: p.HostPort,
			ContainerTLSPort: p.ContainerTLSProxyPort, HostTLSPort: p.HostTLSProxyPort})
	}
	for _, r := range inst.Request.Routes {
		ep.Routes = append(ep.Routes, Route{Hostnames: r.Hostnames, Port: r.Port})
	}
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
