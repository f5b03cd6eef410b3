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
	_, _, release := s.claimRouting(c)
	defer release()
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

	// inst.Request's routes are read only in a routing turn (route and
	// here), so they are replaced in place.
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

// Registration order. A stop must unregister an instance's routes before
// its app is signalled, and nothing may register them again after that;
// yet no lock is held while the route hook or a Verify talks to the
// network (a Verify may take ConfirmTimeout, 10s). So:
//
//   - route and UpdateRoutes take a routing turn (claimRouting): one at a
//     time per container; the turn's context ends its Verify;
//   - unroute counts itself (c.unroutes), ends the Verify of the turn in
//     flight, waits for that turn to end (a registration already past its
//     Verify: one publish), then unregisters: its unregister comes last;
//   - a turn registers only while no unroute came since it began, and
//     withdraws what it registered when one came meanwhile.

// claimRouting waits until no other routing turn of c is in flight and
// takes one: it answers the unroute count at its start, the turn's
// context (ended by an unroute or release) and release. Nothing is held
// while it waits.
func (s *Store) claimRouting(c *container) (uint64, context.Context, func()) {
	for {
		s.mu.Lock()
		busy := c.routing
		if busy == nil {
			done := make(chan struct{})
			ctx, cancel := context.WithCancel(s.rootCtx)
			c.routing, c.cancelRouting = done, cancel
			gen := c.unroutes
			s.mu.Unlock()
			return gen, ctx, func() {
				cancel()
				s.mu.Lock()
				c.routing, c.cancelRouting = nil, nil
				s.mu.Unlock()
				close(done)
			}
		}
		s.mu.Unlock()
		<-busy
	}
}

// routeStale says whether a turn that began at unroute count gen may no
// longer register: c is stopping, not running, or was unrouted since.
func (s *Store) routeStale(c *container, gen uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.stopping || c.info.State != executor.StateRunning || c.unroutes != gen
}

// route verifies a running instance and makes it routable through the
// route hook (see Registration order).
func (s *Store) route(logger lager.Logger, c *container) { s.routeTurn(logger, c, false, false) }

// adoptedRoute is an adoption's first route: an instance whose liveness
// checks last reported failing (LivenessReporter) is not routed, and a
// Verifier that confirms the instance unchanged (AdoptConfirmer) is not
// asked to Verify it again.
func (s *Store) adoptedRoute(logger lager.Logger, c *container) { s.routeTurn(logger, c, true, true) }

// servingRoute is the route after a restarted proxy answers again
// (ProxyServing): an instance whose liveness checks last reported failing
// is not routed. Without the report an app whose checks failed before the
// proxy's restart, and still fail, was routed again: its checks' answer
// had not changed, so no Liveness notice came to unroute it, and with
// health_check_interval 0 nothing else would. cellinit runs its checks
// right after restarting the proxy, so a report made while the proxy was
// down does not hold a healthy instance back for a whole interval.
func (s *Store) servingRoute(logger lager.Logger, c *container) { s.routeTurn(logger, c, false, true) }

func (s *Store) routeTurn(logger lager.Logger, c *container, adopted, askReport bool) {
	gen, ctx, release := s.claimRouting(c)
	defer release()
	s.mu.Lock()
	inst, stopping := c.inst, c.stopping || c.unroutes != gen
	s.mu.Unlock()
	if stopping || inst == nil {
		return
	}
	if askReport {
		if err := s.reportedLiveness(inst); err != nil {
			// Routed again once the checks pass (a Liveness notice, or
			// the store's health round).
			logger.Info("reported-not-ready", lager.Data{errorKey: err.Error(), "adopted": adopted})
			s.publish(executor.EventContainerRoutable, c.info.GUID, "not ready: "+err.Error(), nil)
			return
		}
	}
	for _, h := range s.hooks {
		if v, ok := h.(Verifier); ok {
			if ac, ok := h.(AdoptConfirmer); ok && adopted && ac.ConfirmedAtAdoption(inst) {
				s.publish(executor.EventContainerReady, c.info.GUID, "adopted: serves what it was last verified to serve (not verified again)", nil)
				continue
			}
			if err := v.Verify(ctx, logger, inst); err != nil {
				if s.routeStale(c, gen) {
					return // unrouted or stopped meanwhile: nothing to say
				}
				logger.Error("not-verified", err)
				s.publish(executor.EventContainerRoutable, c.info.GUID, "not routable: "+err.Error(), nil)
				return
			}
			if len(inst.ProxyPorts) > 0 {
				s.publish(executor.EventContainerReady, c.info.GUID, "verified handshake: the host TLS ports serve the issued identity", nil)
			}
		}
	}
	if s.routeStale(c, gen) {
		return // stopped while verifying: register nothing
	}
	if s.deps.Pipeline.Routes != nil {
		if err := s.deps.Pipeline.Routes.Routable(logger, inst); err != nil {
			logger.Error("not-routable", err)
			s.publish(executor.EventContainerRoutable, c.info.GUID, "not routable: "+err.Error(), nil)
			return
		}
	}
	s.mu.Lock()
	if c.stopping || c.info.State != executor.StateRunning || c.unroutes != gen {
		s.mu.Unlock()
		// An unroute began after the check above: it waits for this turn
		// and unregisters after it; withdraw at once all the same.
		if s.deps.Pipeline.Routes != nil {
			_ = s.deps.Pipeline.Routes.Unroutable(logger, c.info.GUID)
		}
		return
	}
	c.info.Routable = true
	snap := s.viewLocked(c)
	s.mu.Unlock()
	s.publish(executor.EventContainerRoutable, c.info.GUID, fmt.Sprintf("routable: %d route(s) registered", len(inst.Request.Routes)), &snap)
}

// reportedLiveness answers why inst's liveness checks run outside the store
// last reported failing (LivenessReporter), nil when they passed or none
// reported.
func (s *Store) reportedLiveness(inst *Instance) error {
	for _, h := range s.hooks {
		if r, ok := h.(LivenessReporter); ok {
			if err := r.ReportedLiveness(inst); err != nil {
				return err
			}
		}
	}
	return nil
}

// unroute withdraws routes; it runs before the app is signalled. It ends
// a routing turn's Verify and waits for the turn (see Registration order).
func (s *Store) unroute(logger lager.Logger, c *container) {
	s.mu.Lock()
	c.unroutes++
	was := c.info.Routable
	c.info.Routable = false
	busy, cancel := c.routing, c.cancelRouting
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if busy != nil {
		<-busy
	}
	if s.deps.Pipeline.Routes != nil {
		if err := s.deps.Pipeline.Routes.Unroutable(logger, c.info.GUID); err != nil {
			logger.Error("unroute", err)
		}
	}
	if was {
		s.publish(executor.EventContainerRoutable, c.info.GUID, "not routable", nil)
	}
}
