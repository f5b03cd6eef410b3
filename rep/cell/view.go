package cell

import (
	"context"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/rep/lrp"
)

// BBSHealth is a BBS client that knows whether BBS answered last;
// *bbs.Client implements it.
type BBSHealth interface {
	Reachable() (bool, string)
}

// DiegoState is the cell's view for operators (GET /v1/state, cellctl
// state): presence, BBS, evacuation, and its instances and tasks by state.
func (c *Cell) DiegoState(ctx context.Context) (executor.DiegoState, error) {
	ctrs, err := c.store.List(ctx)
	if err != nil {
		return executor.DiegoState{}, err
	}
	out := executor.DiegoState{Evacuating: c.isEvacuating(), LRPs: map[string]int{}, Tasks: map[string]int{}}
	if c.cfg.PresenceHeld != nil {
		out.PresenceHeld = c.cfg.PresenceHeld()
	}
	if h, ok := c.bbs.(BBSHealth); ok {
		out.BBSReachable, out.BBSError = h.Reachable()
	}
	for _, ctr := range ctrs {
		if _, ok := ctr.Tags[lrp.TagTaskGUID]; ok {
			out.Tasks[taskState(ctr).String()]++
			continue
		}
		if _, ok := c.identityOf(ctr); !ok {
			continue
		}
		out.LRPs[lrpState(ctr)]++
	}
	return out, nil
}

// lrpState names an instance's state as the cell reports it to BBS.
func lrpState(ctr executor.Container) string {
	switch {
	case ctr.State == executor.StateReserved:
		return "RESERVED"
	case ctr.State == executor.StateRunning && ctr.Routable:
		return "RUNNING"
	case ctr.State == executor.StateCompleted:
		return "COMPLETED"
	}
	return "CLAIMED"
}
