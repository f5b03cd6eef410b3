// Package api is the rep's HTTP API on a cellagent Diego cell: what the
// auctioneer calls to read the cell's state and place work on it, and what
// BBS calls to stop an instance or cancel a task. Bodies are JSON as rep/client.go sends
// and reads them. The package only decodes and encodes; the Cell does the
// work.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"code.cloudfoundry.org/lager/v3"
)

// ErrNotFound answers 404 from StopLRP.
var ErrNotFound = errors.New("not found")

// ErrInvalidUpdate answers 400 from UpdateLRP (the update cannot apply to
// the instance, e.g. a port's protocol change); ErrNotRunning 409 (the
// instance is not running).
var (
	ErrInvalidUpdate = errors.New("invalid update")
	ErrNotRunning    = errors.New("not running")
)

//go:generate go tool counterfeiter -o apifakes/fake_cell.go . Cell

// Cell is what the handlers need of the cell.
type Cell interface {
	State(ctx context.Context) (CellState, error)
	// Perform takes the work that fits and answers the work that failed.
	Perform(ctx context.Context, w Work) (Work, error)
	// StopLRP stops an instance in the background.
	StopLRP(ctx context.Context, processGUID, instanceGUID string) error
	// UpdateLRP applies an LRP update to a running instance.
	UpdateLRP(ctx context.Context, u LRPUpdate) error
	// CancelTask deletes a task's container in the background.
	CancelTask(ctx context.Context, taskGUID string) error
	Ping(ctx context.Context) error
}

const maxBody = 16 << 20

// New answers the handler of the rep API.
func New(logger lager.Logger, cell Cell) http.Handler {
	h := &handler{logger: logger.Session("rep-api"), cell: cell}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", h.ping)
	mux.HandleFunc("GET /state", h.state)
	mux.HandleFunc("POST /work", h.work)
	mux.HandleFunc("POST /v1/lrps/{process_guid}/instances/{instance_guid}/stop", h.stop)
	mux.HandleFunc("PUT /v1/lrps/{process_guid}/instances/{instance_guid}", h.update)
	mux.HandleFunc("PUT /v2/lrps/{process_guid}/instances/{instance_guid}", h.update)
	mux.HandleFunc("POST /v1/tasks/{task_guid}/cancel", h.cancelTask)
	return mux
}

type handler struct {
	logger lager.Logger
	cell   Cell
}

type errorBody struct {
	Error string `json:"error"`
}

func (h *handler) fail(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, errorBody{Error: fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *handler) ping(w http.ResponseWriter, r *http.Request) {
	if err := h.cell.Ping(r.Context()); err != nil {
		h.fail(w, http.StatusServiceUnavailable, "cell not ready: %v", err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *handler) state(w http.ResponseWriter, r *http.Request) {
	st, err := h.cell.State(r.Context())
	if err != nil {
		h.logger.Error("state", err)
		h.fail(w, http.StatusInternalServerError, "state: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *handler) work(w http.ResponseWriter, r *http.Request) {
	var work Work
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	if err := dec.Decode(&work); err != nil {
		h.logger.Error("work-invalid-json", err)
		h.fail(w, http.StatusBadRequest, "work: invalid JSON: %v", err)
		return
	}
	failed, err := h.cell.Perform(r.Context(), work)
	if err != nil {
		h.logger.Error("perform", err)
		h.fail(w, http.StatusInternalServerError, "work: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, failed)
}

func (h *handler) stop(w http.ResponseWriter, r *http.Request) {
	err := h.cell.StopLRP(r.Context(), r.PathValue("process_guid"), r.PathValue("instance_guid"))
	switch {
	case errors.Is(err, ErrNotFound):
		h.fail(w, http.StatusNotFound, "%v", err)
	case err != nil:
		h.fail(w, http.StatusInternalServerError, "stop: %v", err)
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

// update applies rep.LRPUpdate; the path names the instance, and a body
// naming another one is refused.
func (h *handler) update(w http.ResponseWriter, r *http.Request) {
	var u LRPUpdate
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&u); err != nil {
		h.fail(w, http.StatusBadRequest, "lrp update: invalid JSON: %v", err)
		return
	}
	pg, ig := r.PathValue("process_guid"), r.PathValue("instance_guid")
	if (u.ProcessGUID != "" && u.ProcessGUID != pg) || (u.InstanceGUID != "" && u.InstanceGUID != ig) {
		h.fail(w, http.StatusBadRequest, "lrp update: body names %s/%s, path %s/%s", u.ProcessGUID, u.InstanceGUID, pg, ig)
		return
	}
	u.ProcessGUID, u.InstanceGUID = pg, ig
	err := h.cell.UpdateLRP(r.Context(), u)
	switch {
	case errors.Is(err, ErrNotFound):
		h.fail(w, http.StatusNotFound, "%v", err)
	case errors.Is(err, ErrInvalidUpdate):
		h.fail(w, http.StatusBadRequest, "%v", err)
	case errors.Is(err, ErrNotRunning):
		h.fail(w, http.StatusConflict, "%v", err)
	case err != nil:
		h.logger.Error("update-lrp", err)
		h.fail(w, http.StatusInternalServerError, "update: %v", err)
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

func (h *handler) cancelTask(w http.ResponseWriter, r *http.Request) {
	err := h.cell.CancelTask(r.Context(), r.PathValue("task_guid"))
	switch {
	case errors.Is(err, ErrNotFound):
		h.fail(w, http.StatusNotFound, "%v", err)
	case err != nil:
		h.fail(w, http.StatusInternalServerError, "cancel: %v", err)
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}
