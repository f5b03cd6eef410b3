package cell

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/backoff"
	"github.com/cellagent/cellagent/rep/api"
	"github.com/cellagent/cellagent/rep/lrp"
	"github.com/cellagent/cellagent/rep/models"
)

// Route updates of running instances. BBS tells cells of an LRP update in
// two ways: a PUT /v2/lrps/... from BBS when internal routes or metric
// tags change (rep.LRPUpdate), and, for every change, a desired_lrp_changed
// event on its event stream, which Diego's route-emitter watches. This
// cell registers cf-router routes itself, so it watches that stream too:
// each change of a desired LRP with instances here re-registers their new
// routes (the route emitter unregisters the ones that went away).

//go:generate go tool counterfeiter -o cellfakes/fake_route_updater.go . RouteUpdater

// RouteUpdater changes a running instance's routes (the container
// store; cmd/cellagent checks that it implements it).
type RouteUpdater interface {
	UpdateRoutes(ctx context.Context, guid string, u executor.RouteUpdate) (executor.Container, error)
}

// watchDesired follows BBS's desired LRP changes until the cell stops,
// reconnecting with backoff. After each (re)connection it re-reads the
// desired LRPs of its running instances: a change made while the stream
// was down must not be missed.
func (c *Cell) watchDesired() {
	logger := c.logger.Session("watch-desired-lrps")
	retry := backoff.New(c.clock, time.Second, 30*time.Second)
	for {
		err := c.bbs.DesiredLRPChanges(c.ctx, c.cfg.CellID, func() {
			// On this goroutine, before the stream's first event: a
			// resync reading older desired LRPs must not land after a
			// newer event, nor overlap the resync of a later reconnect.
			retry.Reset()
			c.resyncRoutes(logger)
		}, func(ev *models.DesiredLRPChangedEvent) {
			c.applyRoutes(logger, ev.GetAfter())
		})
		if c.ctx.Err() != nil {
			return
		}
		logger.Info("event-stream-ended", lager.Data{"error": fmt.Sprint(err), "retry-in": retry.Current().String()})
		if !retry.Wait(c.ctx.Done()) {
			return
		}
	}
}

// resyncRoutes applies the current desired routes to every running
// instance.
func (c *Cell) resyncRoutes(logger lager.Logger) {
	ctrs, err := c.store.List(c.ctx)
	if err != nil {
		logger.Error("list-containers", err)
		return
	}
	seen := map[string]bool{}
	for _, ctr := range ctrs {
		pg := ctr.Tags[lrp.TagProcessGUID]
		if pg == "" || seen[pg] || ctr.State != executor.StateRunning {
			continue
		}
		seen[pg] = true
		ctx, cancel := context.WithTimeout(c.ctx, bbsCallTimeout)
		d, err := c.bbs.DesiredLRP(ctx, pg)
		cancel()
		if err != nil {
			logger.Info("read-desired-lrp-failed", lager.Data{keyProcessGUID: pg, "error": err.Error()})
			continue
		}
		c.applyRoutes(logger, d)
	}
}

// applyRoutes gives the running instances of d the routes d now has.
func (c *Cell) applyRoutes(logger lager.Logger, d *models.DesiredLRP) {
	if !c.cfg.EmitRoutes || c.cfg.Routes == nil || d == nil {
		return
	}
	routes, err := lrp.Routes(d.GetRoutes())
	if err != nil {
		logger.Error("unsupported-routes", err, lager.Data{keyProcessGUID: d.GetProcessGuid()})
		return
	}
	ctrs, err := c.store.List(c.ctx)
	if err != nil {
		logger.Error("list-containers", err)
		return
	}
	for _, ctr := range ctrs {
		if ctr.Tags[lrp.TagProcessGUID] != d.GetProcessGuid() || ctr.State != executor.StateRunning ||
			sameRoutes(ctr.Routes, routes) {
			continue
		}
		id, _ := c.identityOf(ctr)
		data := lrpData(d.GetProcessGuid(), id.key.GetIndex(), ctr.GUID)
		if _, err := c.cfg.Routes.UpdateRoutes(c.ctx, ctr.GUID, executor.RouteUpdate{Routes: routes}); err != nil {
			logger.Error("update-routes", err, data)
			continue
		}
		data["routes"] = len(routes)
		logger.Info("routes-updated", data)
	}
}

func sameRoutes(a, b []executor.Route) bool {
	return slices.EqualFunc(a, b, func(x, y executor.Route) bool {
		return slices.Equal(x.Hostnames, y.Hostnames) && x.Port == y.Port && x.RouteServiceURL == y.RouteServiceURL &&
			x.IsolationSegment == y.IsolationSegment && x.Protocol == y.Protocol && (x.Options == nil) == (y.Options == nil) &&
			(x.Options == nil || *x.Options == *y.Options)
	})
}

// UpdateLRP applies BBS's PUT /v2/lrps/... to a running instance: its
// metric tags become the tags of its route registrations (as Diego's
// route-emitter tags them). Internal routes are not used by this cell (it
// does not read routes["internal-router"] at placement either), so an
// update of them changes nothing here.
func (c *Cell) UpdateLRP(ctx context.Context, u api.LRPUpdate) error {
	ctr, err := c.store.Get(ctx, u.InstanceGUID)
	if err != nil {
		if errors.Is(err, executor.ErrContainerNotFound) || errors.Is(err, executor.ErrInvalidRequest) {
			return fmt.Errorf("%w: instance %s", api.ErrNotFound, u.InstanceGUID)
		}
		return err
	}
	id, ok := c.identityOf(ctr)
	if !ok || id.key.ProcessGuid != u.ProcessGUID {
		return fmt.Errorf("%w: instance %s of %s", api.ErrNotFound, u.InstanceGUID, u.ProcessGUID)
	}
	if u.MetricTags == nil || c.cfg.Routes == nil {
		return nil
	}
	if _, err := c.cfg.Routes.UpdateRoutes(ctx, ctr.GUID, executor.RouteUpdate{KeepRoutes: true,
		MetricTags: staticTags(u.MetricTags)}); err != nil {
		switch {
		case errors.Is(err, executor.ErrInvalidRequest):
			return fmt.Errorf("%w: %s: %v", api.ErrInvalidUpdate, u.InstanceGUID, err)
		case errors.Is(err, executor.ErrInvalidTransition):
			return fmt.Errorf("%w: %s: %v", api.ErrNotRunning, u.InstanceGUID, err)
		}
		return fmt.Errorf("update %s: %w", u.InstanceGUID, err)
	}
	c.logger.Info("lrp-updated", lrpData(id.key.ProcessGuid, id.key.Index, ctr.GUID))
	return nil
}

// staticTags are resolved metric tags as the route emitter's values
// (a tag without a value is left out, as the route emitter's validation
// wants one).
func staticTags(tags map[string]string) map[string]executor.MetricTagValue {
	out := make(map[string]executor.MetricTagValue, len(tags))
	for k, v := range tags {
		if k != "" && v != "" {
			out[k] = executor.MetricTagValue{Static: v}
		}
	}
	return out
}
