package cell

import (
	"context"
	"errors"
	"fmt"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/backoff"
	"github.com/cellagent/cellagent/rep/api"
	"github.com/cellagent/cellagent/rep/lrp"
	"github.com/cellagent/cellagent/rep/models"
)

// placement is one LRP accepted at /work, reserved and not yet claimed.
type placement struct {
	lrp          api.LRP
	instanceGUID string
	desired      *models.DesiredLRP
	req          executor.RunRequest
}

// Perform reserves a container for each LRP that fits and can run here,
// then claims and runs them in the background. It answers the LRPs and
// tasks it did not take. Unlike the rep, it reads the desired LRP before
// answering, so a desired LRP this cell cannot run fully is refused at
// placement instead of crashing after it.
func (c *Cell) Perform(ctx context.Context, w api.Work) (api.Work, error) {
	var failed api.Work
	logger := c.logger.Session("perform", lager.Data{"lrps": len(w.LRPs), "tasks": len(w.Tasks)})
	if w.CellID != "" && w.CellID != c.cfg.CellID {
		logger.Info("work-for-another-cell", lager.Data{"cell-id": w.CellID})
		return api.Work{LRPs: w.LRPs, Tasks: w.Tasks}, nil
	}
	failed.Tasks = c.performTasks(ctx, logger, w.Tasks)
	desired := map[string]*models.DesiredLRP{} // instances of one process share one read
	for _, l := range w.LRPs {
		p, err := c.prepare(ctx, l, desired)
		var refusal *lrp.Refusal
		switch {
		case errors.As(err, &refusal):
			// Answered as placed: the auctioneer fails a work item it gets
			// back with an empty placement error, which would hide the
			// reason. The cell records the reason on the actual LRP itself.
			data := lrpData(l.ProcessGUID, l.Index, "")
			data["reason"] = refusal.Reason
			logger.Info("refused-lrp", data)
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.failPlacement(l, err.Error())
			}()
			continue
		case err != nil:
			data := lrpData(l.ProcessGUID, l.Index, "")
			data["error"] = err.Error()
			logger.Info("failed-lrp", data)
			failed.LRPs = append(failed.LRPs, l)
			continue
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.claimAndRun(p)
		}()
	}
	return failed, nil
}

// prepare checks, translates and reserves one LRP.
func (c *Cell) prepare(ctx context.Context, l api.LRP, cache map[string]*models.DesiredLRP) (placement, error) {
	if l.ProcessGUID == "" {
		return placement{}, errors.New("lrp without process_guid")
	}
	if _, err := lrp.Image(l.RootFs, c.cfg.Stacks); err != nil {
		return placement{}, err
	}
	guid, err := newInstanceGUID()
	if err != nil {
		return placement{}, err
	}
	desired, ok := cache[l.ProcessGUID]
	if !ok {
		bctx, cancel := context.WithTimeout(ctx, bbsCallTimeout)
		defer cancel()
		if desired, err = c.bbs.DesiredLRP(bctx, l.ProcessGUID); err != nil {
			return placement{}, fmt.Errorf("read desired lrp: %w", err)
		}
		cache[l.ProcessGUID] = desired
	}
	req, err := lrp.Translate(desired, l.Index, lrp.Settings{Stacks: c.cfg.Stacks, EmitRoutes: c.cfg.EmitRoutes,
		AllowPrivileged: c.cfg.AllowPrivileged})
	if err != nil {
		return placement{}, err
	}
	req.Tags = tags(l, guid)
	resolved := lrp.MetricTags(desired, l.Index, guid)
	for k, v := range resolved {
		req.Tags[metricTagPrefix+k] = v
	}
	if len(req.Routes) > 0 {
		req.MetricTags = staticTags(resolved) // the tags of its route registrations
	}
	if err := req.Validate(true); err != nil {
		return placement{}, &lrp.Refusal{Reason: "run request: " + err.Error()}
	}
	failures, err := c.store.Allocate(ctx, []executor.AllocationRequest{{GUID: guid, Resources: *req.Resources, Tags: req.Tags}})
	if err != nil {
		return placement{}, err
	}
	if len(failures) > 0 {
		return placement{}, failures[0].Error
	}
	req.Resources = nil // they came with the allocation
	return placement{lrp: l, instanceGUID: guid, desired: desired, req: req}, nil
}

// failPlacement records why this cell cannot run the LRP as its
// placement error (BBS keeps it UNCLAIMED and auctions it again later).
func (c *Cell) failPlacement(l api.LRP, reason string) {
	ctx, cancel := context.WithTimeout(c.ctx, bbsCallTimeout)
	defer cancel()
	key := &models.ActualLRPKey{ProcessGuid: l.ProcessGUID, Index: l.Index, Domain: l.Domain}
	if err := c.bbs.Fail(ctx, key, reason); err != nil {
		c.logger.Error("fail-actual-lrp", err, lrpData(l.ProcessGUID, l.Index, ""))
	}
}

// claimAndRun claims the actual LRP and runs its container; a lost claim
// (another cell won, or the LRP was removed) drops the reservation.
func (c *Cell) claimAndRun(p placement) {
	key := &models.ActualLRPKey{ProcessGuid: p.lrp.ProcessGUID, Index: p.lrp.Index, Domain: p.lrp.Domain}
	inst := &models.ActualLRPInstanceKey{InstanceGuid: p.instanceGUID, CellId: c.cfg.CellID}
	logger := c.logger.Session("claim-and-run", lrpData(key.ProcessGuid, key.Index, p.instanceGUID))
	ctx, cancel := context.WithTimeout(c.ctx, bbsCallTimeout)
	defer cancel()
	if err := c.bbs.Claim(ctx, key, inst); err != nil {
		logger.Info("claim-failed", lager.Data{"error": err.Error()})
		c.delete(logger, p.instanceGUID)
		return
	}
	if err := c.store.Run(c.ctx, p.instanceGUID, p.req); err != nil {
		if errors.Is(err, executor.ErrContainerNotFound) {
			// Deleted since the claim: BBS asked to stop it, and the stop
			// path removes the actual LRP.
			logger.Info("deleted-before-run")
			return
		}
		logger.Error("run-failed", err)
		if cerr := c.bbs.Crash(ctx, key, inst, "run: "+err.Error()); cerr != nil {
			logger.Error("crash-actual-lrp", cerr)
		}
		c.delete(logger, p.instanceGUID)
		return
	}
	logger.Info("running-requested")
}

// StopLRP stops and deletes the instance's container, then removes its
// actual LRP, in the background.
func (c *Cell) StopLRP(ctx context.Context, processGUID, instanceGUID string) error {
	ctr, err := c.store.Get(ctx, instanceGUID)
	if err != nil {
		if errors.Is(err, executor.ErrContainerNotFound) || errors.Is(err, executor.ErrInvalidRequest) {
			return fmt.Errorf("%w: instance %s", api.ErrNotFound, instanceGUID)
		}
		return err
	}
	id, ok := c.identityOf(ctr)
	if !ok || id.key.ProcessGuid != processGUID {
		return fmt.Errorf("%w: instance %s of %s", api.ErrNotFound, instanceGUID, processGUID)
	}
	if !c.markStopping(instanceGUID) {
		return nil
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		logger := c.logger.Session("stop-lrp", lrpData(processGUID, id.key.Index, instanceGUID))
		dctx, cancel := context.WithTimeout(c.ctx, 2*bbsCallTimeout+stopBudget)
		defer cancel()
		if err := c.deleteRetrying(dctx, logger, instanceGUID); err != nil {
			logger.Error("delete-container", err)
			c.mu.Lock()
			delete(c.stopping, instanceGUID)
			c.mu.Unlock()
			return
		}
		if err := c.bbs.Remove(dctx, id.key, id.inst); err != nil {
			logger.Error("remove-actual-lrp", err)
		}
		c.forget(instanceGUID)
		logger.Info("stopped")
	}()
	return nil
}

// stopDeleteTries is how often StopLRP asks the store to delete before it
// gives up, stopDeleteRetry the wait before the second try (doubled for
// each further one). A delete the store could not finish (a teardown step
// that failed; it says to retry) would otherwise leave the container and
// its actual LRP until BBS asks for the stop again: a diego CI run saw an
// instance stay for the 120 s its spec waited.
const (
	stopDeleteTries = 4
	stopDeleteRetry = time.Second
)

// deleteRetrying deletes guid's container, trying again after a failure.
func (c *Cell) deleteRetrying(ctx context.Context, logger lager.Logger, guid string) error {
	retry := backoff.New(c.clock, stopDeleteRetry, 4*stopDeleteRetry) // 1 s, 2 s, 4 s between the 4 tries
	for try := 1; ; try++ {
		err := c.store.Delete(ctx, guid)
		if err == nil || errors.Is(err, executor.ErrContainerNotFound) {
			return nil
		}
		if try == stopDeleteTries {
			return err
		}
		logger.Info("delete-container-retrying", lager.Data{"error": err.Error(), "try": try, "retry-in": retry.Current().String()})
		if !retry.Wait(ctx.Done()) {
			return err
		}
	}
}

// stopBudget is a generous bound for stopping and deleting one container
// (its stop grace included).
const stopBudget = 2 * time.Minute

// State is the cell state the auctioneer reads.
func (c *Cell) State(ctx context.Context) (api.CellState, error) {
	st, err := c.store.State(ctx)
	if err != nil {
		return api.CellState{}, err
	}
	ctrs, err := c.store.List(ctx)
	if err != nil {
		return api.CellState{}, err
	}
	stacks := []string{}
	for s := range c.cfg.Stacks {
		stacks = append(stacks, s)
	}
	out := api.CellState{
		RepURL: c.cfg.RepURL, CellID: c.cfg.CellID, Zone: c.cfg.Zone, Evacuating: st.Evacuating,
		RootFSProviders:         api.RootFSProviders{"preloaded": stacks, "docker": nil}, // docker: any image (rep's arbitrary provider)
		AvailableResources:      api.Resources{MemoryMB: int32(st.Available.MemoryMB), DiskMB: int32(st.Available.DiskMB), Containers: st.Available.Containers},
		TotalResources:          api.Resources{MemoryMB: int32(st.Total.MemoryMB), DiskMB: int32(st.Total.DiskMB), Containers: st.Total.Containers},
		LRPs:                    []api.LRP{},
		Tasks:                   []api.Task{},
		VolumeDrivers:           []string{},
		PlacementTags:           nonNil(c.cfg.PlacementTags),
		OptionalPlacementTags:   nonNil(c.cfg.OptionalPlacementTags),
		ProxyMemoryAllocationMB: st.ProxyMemoryOverheadMB,
	}
	for _, ctr := range ctrs {
		if taskGUID, ok := ctr.Tags[lrp.TagTaskGUID]; ok {
			if ctr.State != executor.StateCompleted && ctr.State != executor.StateRunning {
				out.StartingContainerCount++
			}
			out.Tasks = append(out.Tasks, api.Task{TaskGuid: taskGUID, Domain: ctr.Tags[lrp.TagDomain],
				Resource: api.Resource{MemoryMB: int32(ctr.Resources.MemoryMB), DiskMB: int32(ctr.Resources.DiskMB),
					MaxPids: int32(ctr.Resources.MaxPids)}, State: api.TaskState(taskState(ctr)), Failed: ctr.RunResult.Failed})
			continue
		}
		id, ok := c.identityOf(ctr)
		if !ok {
			continue
		}
		state := models.ActualLRPStateClaimed
		switch ctr.State {
		case executor.StateRunning:
			state = models.ActualLRPStateRunning
		case executor.StateReserved, executor.StateInitializing, executor.StateCreated:
			out.StartingContainerCount++
		}
		out.LRPs = append(out.LRPs, api.LRP{InstanceGUID: ctr.GUID, ProcessGUID: id.key.ProcessGuid, Index: id.key.Index,
			Domain: id.key.Domain, Resource: api.Resource{MemoryMB: int32(ctr.Resources.MemoryMB),
				DiskMB: int32(ctr.Resources.DiskMB), MaxPids: int32(ctr.Resources.MaxPids)}, State: state})
	}
	return out, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// markStopping marks guid as being stopped and answers whether this call
// did it (false: a stop or cancel is already under way).
func (c *Cell) markStopping(guid string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping[guid] {
		return false
	}
	c.stopping[guid] = true
	return true
}
