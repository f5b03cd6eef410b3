package lrp

import (
	"fmt"
	"time"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/rep/models"
)

// Setup translates a desired LRP's setup action: downloads, possibly
// inside serial, parallel, try, timeout and emit_progress, with Diego's
// meaning for each. A run or codependent action in it is refused (this
// cell runs one process per container, the app's).
func Setup(a *models.Action) (*executor.SetupAction, error) {
	if a == nil {
		return nil, nil
	}
	out, err := setupAction(a, "setup")
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// kinds counts the action kinds set in a (Diego allows exactly one).
func kinds(a *models.Action) int {
	n := 0
	for _, set := range []bool{a.GetDownloadAction() != nil, a.GetRunAction() != nil, a.GetTimeoutAction() != nil,
		a.GetEmitProgressAction() != nil, a.GetTryAction() != nil, a.GetParallelAction() != nil,
		a.GetSerialAction() != nil, a.GetCodependentAction() != nil} {
		if set {
			n++
		}
	}
	return n
}

func setupAction(a *models.Action, path string) (executor.SetupAction, error) {
	if a == nil || kinds(a) != 1 {
		return executor.SetupAction{}, refuse("%s: an action must have exactly one kind", path)
	}
	switch {
	case a.GetDownloadAction() != nil:
		d := a.GetDownloadAction()
		return executor.SetupAction{Download: &executor.DownloadAction{Artifact: d.GetArtifact(), From: d.GetFrom(), To: d.GetTo(),
			CacheKey: d.GetCacheKey(), User: d.GetUser(),
			Checksum: executor.Checksum{Algorithm: d.GetChecksumAlgorithm(), Value: d.GetChecksumValue()}}}, nil
	case a.GetSerialAction() != nil:
		list, err := setupList(a.GetSerialAction().GetActions(), path+".serial")
		return executor.SetupAction{Serial: list}, err
	case a.GetParallelAction() != nil:
		list, err := setupList(a.GetParallelAction().GetActions(), path+".parallel")
		return executor.SetupAction{Parallel: list}, err
	case a.GetTryAction() != nil:
		inner, err := setupAction(a.GetTryAction().GetAction(), path+".try")
		return executor.SetupAction{Try: &inner}, err
	case a.GetTimeoutAction() != nil:
		t := a.GetTimeoutAction()
		d := time.Duration(t.GetTimeoutMs()) * time.Millisecond
		if t.GetTimeoutMs() == 0 {
			d = time.Duration(t.GetDeprecatedTimeoutNs())
		}
		inner, err := setupAction(t.GetAction(), path+".timeout")
		return executor.SetupAction{Timeout: &executor.TimeoutAction{Action: inner, Timeout: executor.Duration(d)}}, err
	case a.GetEmitProgressAction() != nil:
		e := a.GetEmitProgressAction()
		inner, err := setupAction(e.GetAction(), path+".emit_progress")
		return executor.SetupAction{EmitProgress: &executor.EmitProgressAction{Action: inner, StartMessage: e.GetStartMessage(),
			SuccessMessage: e.GetSuccessMessage(), FailureMessagePrefix: e.GetFailureMessagePrefix()}}, err
	}
	return executor.SetupAction{}, refuse("%s: run and codependent actions before the app's run action are not supported (downloads only)", path)
}

func setupList(actions []*models.Action, path string) ([]executor.SetupAction, error) {
	if len(actions) == 0 {
		return nil, refuse("%s: no actions", path)
	}
	out := make([]executor.SetupAction, 0, len(actions))
	for i, a := range actions {
		s, err := setupAction(a, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// CachedDependencies translates cached_dependencies (LRPs and tasks).
func CachedDependencies(deps []*models.CachedDependency) []executor.CachedDependency {
	var out []executor.CachedDependency
	for _, d := range deps {
		out = append(out, executor.CachedDependency{Name: d.GetName(), From: d.GetFrom(), To: d.GetTo(), CacheKey: d.GetCacheKey(),
			Checksum: executor.Checksum{Algorithm: d.GetChecksumAlgorithm(), Value: d.GetChecksumValue()}})
	}
	return out
}

// taskActions splits a task's action tree into its setup and its run: a
// serial whose last action is the run (alone, or in a serial or
// codependent of one) and whose earlier actions are setup actions, as a
// task that downloads its input and then runs sends.
func taskActions(a *models.Action) (*executor.SetupAction, *models.Action, error) {
	serial := a.GetSerialAction().GetActions()
	if a == nil || a.GetSerialAction() == nil || kinds(a) != 1 || len(serial) < 2 {
		return nil, a, nil
	}
	last := len(serial) - 1
	if _, err := singleRun(serial[last]); err != nil {
		return nil, a, nil // singleRun refuses the whole tree with its reason
	}
	list, err := setupList(serial[:last], "action.serial")
	if err != nil {
		return nil, nil, err
	}
	return &executor.SetupAction{Serial: list}, serial[last], nil
}
