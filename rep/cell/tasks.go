package cell

import (
	"context"
	"errors"
	"fmt"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/rep/api"
	"github.com/cellagent/cellagent/rep/lrp"
	"github.com/cellagent/cellagent/rep/models"
)

// Tasks, as the rep's task processor runs them: reserve (container guid =
// task guid), StartTask in BBS (which answers whether to run it), run,
// CompleteTask with how it ended, delete. A task this cell cannot run
// fully is started and completed as failed with the reason, so the reason
// reaches the task's owner and nothing runs.

const (
	keyTaskGUID = "task-guid"
	// reasonFailedToRun is the rep's TaskCompletionReasonFailedToRunContainer.
	reasonFailedToRun = "failed to run container"
	// reasonFailedToFetchResult is the rep's TaskCompletionReasonFailedToFetchResult.
	reasonFailedToFetchResult = "failed to fetch result"
	// maxResultSize is the rep's MAX_RESULT_SIZE: a larger result file
	// fails the task.
	maxResultSize = 50 << 10
)

//go:generate go tool counterfeiter -o cellfakes/fake_file_reader.go . FileReader

// FileReader reads a file from a container (the container store;
// cmd/cellagent checks that it implements it).
type FileReader interface {
	ReadFile(ctx context.Context, guid, path string, limit int64) ([]byte, error)
}

// taskPlacement is a task accepted at /work, reserved, not yet started.
type taskPlacement struct {
	task api.Task
	req  executor.RunRequest
}

// performTasks takes the tasks that can run and answers the ones that
// failed.
func (c *Cell) performTasks(ctx context.Context, logger lager.Logger, tasks []api.Task) []api.Task {
	var failed []api.Task
	for _, t := range tasks {
		p, err := c.prepareTask(ctx, t)
		var refusal *lrp.Refusal
		switch {
		case errors.As(err, &refusal):
			logger.Info("refused-task", lager.Data{keyTaskGUID: t.TaskGuid, "reason": refusal.Reason})
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.refuseTask(t.TaskGuid, err.Error())
			}()
		case err != nil:
			logger.Info("failed-task", lager.Data{keyTaskGUID: t.TaskGuid, "error": err.Error()})
			failed = append(failed, t)
		default:
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.startAndRunTask(p)
			}()
		}
	}
	return failed
}

func (c *Cell) prepareTask(ctx context.Context, t api.Task) (taskPlacement, error) {
	if err := executor.ValidateGUID(t.TaskGuid); err != nil {
		return taskPlacement{}, err
	}
	if _, err := lrp.Image(t.RootFs, c.cfg.Stacks); err != nil {
		return taskPlacement{}, err
	}
	bctx, cancel := context.WithTimeout(ctx, bbsCallTimeout)
	defer cancel()
	task, err := c.bbs.Task(bctx, t.TaskGuid)
	if err != nil {
		return taskPlacement{}, fmt.Errorf("read task: %w", err)
	}
	req, err := lrp.TranslateTask(task.GetTaskDefinition(), lrp.Settings{Stacks: c.cfg.Stacks, AllowPrivileged: c.cfg.AllowPrivileged})
	if err != nil {
		return taskPlacement{}, err
	}
	req.Tags = map[string]string{lrp.TagTaskGUID: t.TaskGuid, lrp.TagDomain: t.Domain}
	if f := task.GetTaskDefinition().GetResultFile(); f != "" {
		if c.cfg.Files == nil {
			return taskPlacement{}, &lrp.Refusal{Reason: "result_file: this cell cannot read container files"}
		}
		req.Tags[lrp.TagResultFile] = f
	}
	if err := req.Validate(true); err != nil {
		return taskPlacement{}, &lrp.Refusal{Reason: "run request: " + err.Error()}
	}
	failures, err := c.store.Allocate(ctx, []executor.AllocationRequest{{GUID: t.TaskGuid, Resources: *req.Resources, Tags: req.Tags}})
	if err != nil {
		return taskPlacement{}, err
	}
	if len(failures) > 0 {
		return taskPlacement{}, failures[0].Error
	}
	req.Resources = nil
	return taskPlacement{task: t, req: req}, nil
}

// refuseTask completes a task this cell cannot run as failed, with why.
func (c *Cell) refuseTask(taskGUID, reason string) {
	logger := c.logger.Session("refuse-task", lager.Data{keyTaskGUID: taskGUID})
	ctx, cancel := context.WithTimeout(c.ctx, bbsCallTimeout)
	defer cancel()
	should, err := c.bbs.StartTask(ctx, taskGUID, c.cfg.CellID)
	if err != nil || !should {
		logger.Info("not-started", lager.Data{"should-start": should, "error": fmt.Sprint(err)})
		return
	}
	if err := c.bbs.CompleteTask(ctx, taskGUID, c.cfg.CellID, true, reason, ""); err != nil {
		logger.Error("complete-task", err)
	}
}

func (c *Cell) startAndRunTask(p taskPlacement) {
	guid := p.task.TaskGuid
	logger := c.logger.Session("start-task", lager.Data{keyTaskGUID: guid})
	ctx, cancel := context.WithTimeout(c.ctx, bbsCallTimeout)
	defer cancel()
	should, err := c.bbs.StartTask(ctx, guid, c.cfg.CellID)
	if err != nil || !should {
		logger.Info("not-started", lager.Data{"should-start": should, "error": fmt.Sprint(err)})
		c.delete(logger, guid)
		return
	}
	if err := c.store.Run(c.ctx, guid, p.req); err != nil {
		if errors.Is(err, executor.ErrContainerNotFound) {
			logger.Info("deleted-before-run") // cancelled
			return
		}
		logger.Error("run-failed", err)
		if cerr := c.bbs.CompleteTask(ctx, guid, c.cfg.CellID, true, reasonFailedToRun+": "+err.Error(), ""); cerr != nil {
			logger.Error("complete-task", cerr)
		}
		c.delete(logger, guid)
		return
	}
	logger.Info("running-requested")
}

// reportTask completes a task whose container ended, once, and deletes
// the container. A task's process exiting 0 is success.
func (c *Cell) reportTask(ctr executor.Container, taskGUID string) {
	if ctr.State != executor.StateCompleted {
		return
	}
	c.mu.Lock()
	cancelled := c.stopping[ctr.GUID]
	c.mu.Unlock()
	if cancelled || !c.markReported(ctr.GUID, reportedCompleted) {
		return
	}
	logger := c.logger.Session("complete-task", lager.Data{keyTaskGUID: taskGUID})
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		res := ctr.RunResult
		failed := res.ExitStatus == nil || *res.ExitStatus != 0 || res.Stopped
		reason := ""
		if failed {
			reason = res.FailureReason
			if res.Stopped {
				reason = "stopped on the cell"
			}
		}
		ctx, cancel := context.WithTimeout(c.ctx, bbsCallTimeout)
		defer cancel()
		result := ""
		if f := ctr.Tags[lrp.TagResultFile]; f != "" && c.cfg.Files != nil && !res.Stopped {
			// As the rep: a result that cannot be read fails a task that
			// succeeded; a failed task keeps its own reason.
			b, err := c.cfg.Files.ReadFile(ctx, ctr.GUID, f, maxResultSize)
			switch {
			case err == nil:
				result = string(b)
			case !failed:
				logger.Error("fetch-result", err)
				failed, reason = true, reasonFailedToFetchResult+": "+err.Error()
			}
		}
		if err := c.bbs.CompleteTask(ctx, taskGUID, c.cfg.CellID, failed, reason, result); err != nil {
			logger.Error("complete-task", err)
		} else {
			logger.Info("completed", lager.Data{"failed": failed, "reason": reason})
		}
		c.delete(logger, ctr.GUID)
	}()
}

// CancelTask deletes a task's container; BBS has already completed the
// task as cancelled.
func (c *Cell) CancelTask(ctx context.Context, taskGUID string) error {
	ctr, err := c.store.Get(ctx, taskGUID)
	if err != nil || ctr.Tags[lrp.TagTaskGUID] != taskGUID {
		return fmt.Errorf("%w: task %s", api.ErrNotFound, taskGUID)
	}
	if !c.markStopping(taskGUID) {
		return nil
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.delete(c.logger.Session("cancel-task", lager.Data{keyTaskGUID: taskGUID}), taskGUID)
	}()
	return nil
}

// taskState is the rep's Task.State of a task container.
func taskState(ctr executor.Container) models.Task_State {
	if ctr.State == executor.StateReserved {
		return models.Task_Pending
	}
	if ctr.State == executor.StateCompleted {
		return models.Task_Completed
	}
	return models.Task_Running
}
