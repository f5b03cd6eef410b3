package containerstore

import (
	"context"
	"fmt"
	"slices"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
)

// UpdateRoutes applies u to the running instance guid: the new request
// is checked like a run request's routes, persisted, and, when the
// instance is routable, registered again, which unregisters the routes it
// no longer has (the route hook compares with what it registered). A
// change of a port's protocol is refused: the proxy was configured for it
// at start.
func (s *Store) UpdateRoutes(ctx context.Context, guid string, u executor.RouteUpdate) (executor.Container, error) {
	c, err := s.lookup(guid)
	if err != nil {
		return executor.Container{}, err
	}
	c.routeMu.Lock()
	defer c.routeMu.Unlock()
	s.mu.Lock()
	state, stopping, inst, req := c.info.State, c.stopping, c.inst, c.request
	s.mu.Unlock()
	if state != executor.StateRunning || stopping || inst == nil {
		return executor.Container{}, executor.NewError(executor.ErrInvalidTransition,
			"container %s is %s: routes are updated only while it runs", guid, state)
	}
	next := req
	if !u.KeepRoutes {
		next.Routes = u.Routes
	}
	if u.MetricTags != nil {
		next.MetricTags = u.MetricTags
	}
	if !slices.Equal(http2Ports(req.Routes), http2Ports(next.Routes)) {
		return executor.Container{}, executor.NewError(executor.ErrInvalidRequest,
			"routes: a port's protocol cannot change while the instance runs (its proxy was configured at start)")
	}
	if v, ok := s.deps.Pipeline.Routes.(RequestValidator); ok {
		if err := v.ValidateRequest(&next); err != nil {
			return executor.Container{}, executor.NewError(executor.ErrInvalidRequest, "%v", err)
		}
	}

	// inst.Request's routes are read only under routeMu (route, unroute
	// and here), so they are replaced in place.
	s.mu.Lock()
	c.request.Routes, c.request.MetricTags = next.Routes, next.MetricTags
	inst.Request.Routes, inst.Request.MetricTags = next.Routes, next.MetricTags
	c.info.Routes = next.Routes
	routable := c.info.Routable
	s.mu.Unlock()
	s.save(c)

	logger := s.logger.Session("update-routes", lager.Data{guidKey: guid})
	msg := fmt.Sprintf("routes updated: %d route(s)", len(next.Routes))
	if routable && s.deps.Pipeline.Routes != nil {
		var err error
		if len(next.Routes) == 0 {
			err = s.deps.Pipeline.Routes.Unroutable(logger, guid)
		} else {
			err = s.deps.Pipeline.Routes.Routable(logger, inst)
		}
		if err != nil {
			logger.Error("register", err)
			return executor.Container{}, fmt.Errorf("update routes of %s: %w", guid, err)
		}
		msg += " registered"
	}
	s.mu.Lock()
	snap := s.viewLocked(c)
	s.mu.Unlock()
	s.publish(executor.EventContainerRoutable, guid, msg, &snap)
	return snap, nil
}

// http2Ports lists the ports a route serves with HTTP/2, sorted.
func http2Ports(routes []executor.Route) []uint16 {
	var out []uint16
	for _, r := range routes {
		if r.Protocol == "http2" && !slices.Contains(out, r.Port) {
			out = append(out, r.Port)
		}
	}
	slices.Sort(out)
	return out
}
