package cell

import (
	"context"
	"errors"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/rep/models"
)

// reconcile compares BBS's actual LRPs on this cell with the containers,
// as the rep's bulker does: a claimed or running record whose container
// is gone is removed (BBS's convergence then starts a replacement), a
// Diego container past its reservation that BBS does not place here is
// an orphan and is deleted. Containers are listed before BBS is asked, so
// a container claimed in between is still found in BBS's answer; and a
// record is only called missing after its container is looked up again.
func (c *Cell) reconcile() {
	logger := c.logger.Session("reconcile")
	ctrs, err := c.store.List(c.ctx)
	if err != nil {
		logger.Error("list-containers", err)
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, bbsCallTimeout)
	defer cancel()
	actuals, err := c.bbs.ActualLRPs(ctx, c.cfg.CellID)
	if err != nil {
		logger.Error("list-actual-lrps", err)
		return
	}
	known := map[string]bool{}
	for _, a := range actuals {
		inst := a.GetActualLrpInstanceKey()
		if inst.GetCellId() != c.cfg.CellID {
			continue
		}
		// An EVACUATING record is this cell's instance too: it runs on
		// until BBS lets it go.
		known[inst.GetInstanceGuid()] = true
		if a.GetPresence() != models.ActualLRP_ORDINARY {
			continue
		}
		if a.GetState() != models.ActualLRPStateClaimed && a.GetState() != models.ActualLRPStateRunning {
			continue
		}
		if _, err := c.store.Get(c.ctx, inst.GetInstanceGuid()); !errors.Is(err, executor.ErrContainerNotFound) {
			continue
		}
		data := lrpData(a.GetActualLrpKey().GetProcessGuid(), a.GetActualLrpKey().GetIndex(), inst.GetInstanceGuid())
		if err := c.bbs.Remove(ctx, a.GetActualLrpKey(), inst); err != nil {
			logger.Error("remove-residual-actual-lrp", err, data)
			continue
		}
		logger.Info("removed-residual-actual-lrp", data)
	}
	for _, ctr := range ctrs {
		if _, ok := c.identityOf(ctr); !ok || known[ctr.GUID] || ctr.State == executor.StateReserved {
			continue
		}
		c.mu.Lock()
		busy := c.stopping[ctr.GUID]
		c.mu.Unlock()
		if busy {
			continue
		}
		logger.Info("deleting-orphan", lager.Data{keyInstanceGUID: ctr.GUID, "state": ctr.State.String()})
		c.delete(logger, ctr.GUID)
	}
}
