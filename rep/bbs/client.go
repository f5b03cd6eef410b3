// Package bbs is the part of Diego's BBS API a cell calls: claim, start,
// crash, remove and fail actual LRPs, list the cell's actual LRPs and read
// a desired LRP. BBS speaks binary protobuf over HTTPS with mutual TLS;
// every call is a POST and errors come back inside the response message
// (field 1, models.Error) with HTTP 200.
//
// A Client is safe for concurrent use; it holds no state but its
// connection pool.
package bbs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cellagent/cellagent/rep/models"
	"github.com/cellagent/cellagent/rep/mtls"
)

// BBS routes (bbs/routes.go).
const (
	routeClaim          = "/v1/actual_lrps/claim"
	routeStart          = "/v1/actual_lrps/start.r1"
	routeCrash          = "/v1/actual_lrps/crash"
	routeFail           = "/v1/actual_lrps/fail"
	routeRemove         = "/v1/actual_lrps/remove"
	routeActualLRPs     = "/v1/actual_lrps/list"
	routeDesiredByGUID  = "/v1/desired_lrps/get_by_process_guid.r3"
	routeTaskByGUID     = "/v1/tasks/get_by_task_guid.r3"
	routeStartTask      = "/v1/tasks/start"
	routeCompleteTask   = "/v1/tasks/complete"
	routeEvacClaimed    = "/v1/actual_lrps/evacuate_claimed"
	routeEvacRunning    = "/v1/actual_lrps/evacuate_running.r1"
	routeEvacStopped    = "/v1/actual_lrps/evacuate_stopped"
	routeEvacCrashed    = "/v1/actual_lrps/evacuate_crashed"
	routeRemoveEvac     = "/v1/actual_lrps/remove_evacuating"
	protobufContentType = "application/x-protobuf"
	maxResponseBytes    = 32 << 20
)

// Error is an error BBS answered; Type says which (models.Error_Type).
type Error struct {
	Type    models.Error_Type
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("bbs: %s: %s", e.Type, e.Message) }

// IsType reports whether err is a BBS error of type t.
func IsType(err error, t models.Error_Type) bool {
	var be *Error
	return errors.As(err, &be) && be.Type == t
}

// Config says where BBS is and how to authenticate to it.
type Config struct {
	URL     string
	TLS     mtls.Files
	Timeout time.Duration // per request; default 10s
	// Observe, when set, is told of every call's outcome (metrics).
	Observe func(route string, err error)
}

// Client calls BBS.
type Client struct {
	url  string
	http *http.Client
	// stream has no overall timeout: event streams stay open.
	stream  *http.Client
	observe func(route string, err error)

	mu        sync.Mutex // guards reachable and lastError
	reachable bool       // the last call got an answer from BBS
	lastError string     // the last failed call's error
}

// Reachable answers whether the last call got an answer from BBS (a BBS
// error in it included) and the last failed call's error.
func (c *Client) Reachable() (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reachable, c.lastError
}

func (c *Client) record(route string, answered bool, err error) {
	c.mu.Lock()
	c.reachable = answered
	if err != nil {
		c.lastError = err.Error()
	}
	c.mu.Unlock()
	if c.observe != nil {
		c.observe(route, err)
	}
}

// New makes a client; it does not contact BBS.
func New(cfg Config) (*Client, error) {
	if !strings.HasPrefix(cfg.URL, "https://") {
		return nil, fmt.Errorf("bbs url %q: BBS is served over https", cfg.URL)
	}
	tlsCfg, err := mtls.Client(cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("bbs tls: %w", err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	tr := &http.Transport{TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second}
	return &Client{url: strings.TrimRight(cfg.URL, "/"), http: &http.Client{Transport: tr, Timeout: cfg.Timeout},
		stream: &http.Client{Transport: tr}, observe: cfg.Observe}, nil
}

type errorResponse interface {
	proto.Message
	GetError() *models.Error
}

// do posts req to route and decodes the answer into resp; a BBS error in
// the answer becomes an *Error.
func (c *Client) do(ctx context.Context, route string, req proto.Message, resp errorResponse) error {
	answered, err := c.call(ctx, route, req, resp)
	c.record(route, answered, err)
	return err
}

// call makes one call; answered says BBS sent a protobuf answer.
func (c *Client) call(ctx context.Context, route string, req proto.Message, resp errorResponse) (bool, error) {
	body, err := proto.Marshal(req)
	if err != nil {
		return false, fmt.Errorf("bbs %s: encode: %w", route, err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+route, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("bbs %s: %w", route, err)
	}
	hreq.Header.Set("Content-Type", protobufContentType)
	hresp, err := c.http.Do(hreq)
	if err != nil {
		return false, fmt.Errorf("bbs %s: %w", route, err)
	}
	defer hresp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponseBytes))
	if err != nil {
		return false, fmt.Errorf("bbs %s: read answer: %w", route, err)
	}
	if hresp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("bbs %s: http %d: %.200s", route, hresp.StatusCode, b)
	}
	if err := proto.Unmarshal(b, resp); err != nil {
		return false, fmt.Errorf("bbs %s: decode answer: %w", route, err)
	}
	if e := resp.GetError(); e != nil {
		return true, &Error{Type: e.GetType(), Message: e.GetMessage()}
	}
	return true, nil
}

// Claim claims the actual LRP (process guid, index) for this instance.
func (c *Client) Claim(ctx context.Context, key *models.ActualLRPKey, inst *models.ActualLRPInstanceKey) error {
	return c.do(ctx, routeClaim, &models.ClaimActualLRPRequest{ProcessGuid: key.GetProcessGuid(), Index: key.GetIndex(),
		ActualLrpInstanceKey: inst}, &models.ActualLRPLifecycleResponse{})
}

// Start says the instance runs, reachable at net.
type Start struct {
	Key              *models.ActualLRPKey
	Instance         *models.ActualLRPInstanceKey
	Net              *models.ActualLRPNetInfo
	MetricTags       map[string]string
	Routable         bool
	AvailabilityZone string
}

// Start reports the instance running.
func (c *Client) Start(ctx context.Context, s Start) error {
	return c.do(ctx, routeStart, &models.StartActualLRPRequest{ActualLrpKey: s.Key, ActualLrpInstanceKey: s.Instance,
		ActualLrpNetInfo: s.Net, MetricTags: s.MetricTags,
		OptionalRoutable: &models.StartActualLRPRequest_Routable{Routable: s.Routable},
		AvailabilityZone: s.AvailabilityZone}, &models.ActualLRPLifecycleResponse{})
}

// Crash reports the instance exited on its own; BBS restarts it per its
// crash policy.
func (c *Client) Crash(ctx context.Context, key *models.ActualLRPKey, inst *models.ActualLRPInstanceKey, reason string) error {
	return c.do(ctx, routeCrash, &models.CrashActualLRPRequest{ActualLrpKey: key, ActualLrpInstanceKey: inst,
		ErrorMessage: reason}, &models.ActualLRPLifecycleResponse{})
}

// Remove reports the instance gone after it was asked to stop.
func (c *Client) Remove(ctx context.Context, key *models.ActualLRPKey, inst *models.ActualLRPInstanceKey) error {
	return c.do(ctx, routeRemove, &models.RemoveActualLRPRequest{ProcessGuid: key.GetProcessGuid(), Index: key.GetIndex(),
		ActualLrpInstanceKey: inst}, &models.ActualLRPLifecycleResponse{})
}

// Fail records a placement error on an unclaimed actual LRP.
func (c *Client) Fail(ctx context.Context, key *models.ActualLRPKey, reason string) error {
	return c.do(ctx, routeFail, &models.FailActualLRPRequest{ActualLrpKey: key, ErrorMessage: reason},
		&models.ActualLRPLifecycleResponse{})
}

// ActualLRPs lists the actual LRPs BBS places on cellID.
func (c *Client) ActualLRPs(ctx context.Context, cellID string) ([]*models.ActualLRP, error) {
	resp := &models.ActualLRPsResponse{}
	if err := c.do(ctx, routeActualLRPs, &models.ActualLRPsRequest{CellId: cellID}, resp); err != nil {
		return nil, err
	}
	return resp.GetActualLrps(), nil
}

// DesiredLRP reads the desired LRP of a process guid.
func (c *Client) DesiredLRP(ctx context.Context, processGUID string) (*models.DesiredLRP, error) {
	resp := &models.DesiredLRPResponse{}
	if err := c.do(ctx, routeDesiredByGUID, &models.DesiredLRPByProcessGuidRequest{ProcessGuid: processGUID}, resp); err != nil {
		return nil, err
	}
	if resp.GetDesiredLrp() == nil {
		return nil, &Error{Type: models.Error_ResourceNotFound, Message: "no desired lrp in the answer"}
	}
	return resp.GetDesiredLrp(), nil
}

// Task reads a task.
func (c *Client) Task(ctx context.Context, taskGUID string) (*models.Task, error) {
	resp := &models.TaskResponse{}
	if err := c.do(ctx, routeTaskByGUID, &models.TaskByGuidRequest{TaskGuid: taskGUID}, resp); err != nil {
		return nil, err
	}
	if resp.GetTask() == nil {
		return nil, &Error{Type: models.Error_ResourceNotFound, Message: "no task in the answer"}
	}
	return resp.GetTask(), nil
}

// StartTask moves the task to Running on cellID; false means it must not
// run (already running elsewhere, cancelled).
func (c *Client) StartTask(ctx context.Context, taskGUID, cellID string) (bool, error) {
	resp := &models.StartTaskResponse{}
	if err := c.do(ctx, routeStartTask, &models.StartTaskRequest{TaskGuid: taskGUID, CellId: cellID}, resp); err != nil {
		return false, err
	}
	return resp.GetShouldStart(), nil
}

// CompleteTask reports how the task ended.
func (c *Client) CompleteTask(ctx context.Context, taskGUID, cellID string, failed bool, reason, result string) error {
	return c.do(ctx, routeCompleteTask, &models.CompleteTaskRequest{TaskGuid: taskGUID, CellId: cellID, Failed: failed,
		FailureReason: reason, Result: result}, &models.TaskLifecycleResponse{})
}

// Evacuation (bbs/handlers/evacuation_handler.go). Each call answers
// keep_container: whether the cell must keep running the instance for now
// (BBS holds it as EVACUATING until a replacement runs elsewhere).

// EvacuateRunning hands a running instance over to a replacement: BBS
// keeps this one as the EVACUATING record (routable) and auctions a new
// one.
func (c *Client) EvacuateRunning(ctx context.Context, s Start) (bool, error) {
	resp := &models.EvacuationResponse{}
	err := c.do(ctx, routeEvacRunning, &models.EvacuateRunningActualLRPRequest{ActualLrpKey: s.Key,
		ActualLrpInstanceKey: s.Instance, ActualLrpNetInfo: s.Net, MetricTags: s.MetricTags,
		OptionalRoutable: &models.EvacuateRunningActualLRPRequest_Routable{Routable: s.Routable},
		AvailabilityZone: s.AvailabilityZone}, resp)
	return resp.GetKeepContainer(), err
}

// EvacuateClaimed gives up a claimed (starting) instance: BBS unclaims it
// and auctions it again.
func (c *Client) EvacuateClaimed(ctx context.Context, key *models.ActualLRPKey, inst *models.ActualLRPInstanceKey) (bool, error) {
	resp := &models.EvacuationResponse{}
	err := c.do(ctx, routeEvacClaimed, &models.EvacuateClaimedActualLRPRequest{ActualLrpKey: key, ActualLrpInstanceKey: inst}, resp)
	return resp.GetKeepContainer(), err
}

// EvacuateStopped reports an evacuating instance stopped.
func (c *Client) EvacuateStopped(ctx context.Context, key *models.ActualLRPKey, inst *models.ActualLRPInstanceKey) (bool, error) {
	resp := &models.EvacuationResponse{}
	err := c.do(ctx, routeEvacStopped, &models.EvacuateStoppedActualLRPRequest{ActualLrpKey: key, ActualLrpInstanceKey: inst}, resp)
	return resp.GetKeepContainer(), err
}

// EvacuateCrashed reports an instance that crashed during evacuation.
func (c *Client) EvacuateCrashed(ctx context.Context, key *models.ActualLRPKey, inst *models.ActualLRPInstanceKey, reason string) (bool, error) {
	resp := &models.EvacuationResponse{}
	err := c.do(ctx, routeEvacCrashed, &models.EvacuateCrashedActualLRPRequest{ActualLrpKey: key, ActualLrpInstanceKey: inst,
		ErrorMessage: reason}, resp)
	return resp.GetKeepContainer(), err
}

// RemoveEvacuating drops the EVACUATING record of an instance.
func (c *Client) RemoveEvacuating(ctx context.Context, key *models.ActualLRPKey, inst *models.ActualLRPInstanceKey) error {
	return c.do(ctx, routeRemoveEvac, &models.RemoveEvacuatingActualLRPRequest{ActualLrpKey: key, ActualLrpInstanceKey: inst},
		&models.RemoveEvacuatingActualLRPResponse{})
}
