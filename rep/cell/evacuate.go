package cell

import (
	"context"
	"errors"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/rep/bbs"
)

// Evacuation, as the rep's evacuation LRP processor does it. When the
// store starts evacuating (cellctl evacuate, POST /v1/evacuate, SIGUSR1)
// the store refuses new work and /state says Evacuating, so the
// auctioneer places nothing more here. The cell then hands each LRP
// instance over through BBS's evacuation endpoints:
//
//	starting (claimed)     -> EvacuateClaimed: BBS auctions it again; delete
//	running and routable   -> EvacuateRunning: BBS keeps this instance as the
//	                          EVACUATING record (still routed) and auctions a
//	                          replacement; asked again every poll until BBS
//	                          answers keep_container=false (the replacement
//	                          runs elsewhere), then delete (routes first)
//	crashed / stopped      -> EvacuateCrashed / EvacuateStopped; delete
//
// Instances are reported started elsewhere only once routable, so a
// replacement's routes are registered before this one's are withdrawn.
// Tasks run on until they end or the store's evacuation_timeout. Once the
// store holds no container it exits, and the agent with it: the presence
// is released last.

// isEvacuating answers whether the cell evacuates.
func (c *Cell) isEvacuating() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.evacuating
}

// startEvacuation marks the cell evacuating; false when it already was.
func (c *Cell) startEvacuation() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.evacuating {
		return false
	}
	c.evacuating = true
	return true
}

// evacuateAll hands over every LRP instance still here.
func (c *Cell) evacuateAll() {
	ctrs, err := c.store.List(c.ctx)
	if err != nil {
		c.logger.Error("evacuate-list-containers", err)
		return
	}
	for _, ctr := range ctrs {
		c.evacuateOne(ctr)
	}
}

// evacuateOne takes one step of one instance's hand-over; a BBS error
// leaves it for the next poll (the store's evacuation_timeout is the
// backstop).
func (c *Cell) evacuateOne(ctr executor.Container) {
	id, ok := c.identityOf(ctr)
	if !ok || ctr.State == executor.StateReserved {
		return // not an LRP, or not claimed yet: its claim and run come back here as events
	}
	c.mu.Lock()
	busy := c.stopping[ctr.GUID]
	c.mu.Unlock()
	if busy {
		return
	}
	logger := c.logger.Session("evacuate", lrpData(id.key.ProcessGuid, id.key.Index, ctr.GUID))
	ctx, cancel := context.WithTimeout(c.ctx, bbsCallTimeout)
	defer cancel()
	var keep bool
	var err error
	step := ""
	switch {
	case ctr.State == executor.StateRunning && ctr.Routable:
		step = "evacuate-running"
		keep, err = c.bbs.EvacuateRunning(ctx, bbs.Start{Key: id.key, Instance: id.inst, Net: c.netInfo(ctr), Routable: true,
			AvailabilityZone: c.cfg.Zone, MetricTags: metricTags(ctr)})
	case ctr.State == executor.StateCompleted && ctr.RunResult.Stopped:
		step = "evacuate-stopped"
		_, err = c.bbs.EvacuateStopped(ctx, id.key, id.inst)
	case ctr.State == executor.StateCompleted:
		step = "evacuate-crashed"
		_, err = c.bbs.EvacuateCrashed(ctx, id.key, id.inst, ctr.RunResult.FailureReason)
	default: // initializing, created, or running but not yet routable: still starting
		step = "evacuate-claimed"
		keep, err = c.bbs.EvacuateClaimed(ctx, id.key, id.inst)
	}
	if err != nil {
		logger.Error(step, err)
		return
	}
	if keep {
		logger.Debug(step + "-kept")
		return
	}
	if !c.markStopping(ctr.GUID) {
		return
	}
	logger.Info(step + "-done-deleting")
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		dctx, cancel := context.WithTimeout(c.ctx, stopBudget)
		defer cancel()
		if err := c.store.Delete(dctx, ctr.GUID); err != nil && !errors.Is(err, executor.ErrContainerNotFound) {
			logger.Error("delete-container", err)
			c.mu.Lock()
			delete(c.stopping, ctr.GUID)
			c.mu.Unlock()
			return
		}
		c.forget(ctr.GUID)
		logger.Info("evacuated", lager.Data{"step": step})
	}()
}
