package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
)

// MaxBodyBytes is the largest request body accepted.
const MaxBodyBytes = 1 << 20

// MaxImageBytes is the largest image archive POST /v1/images accepts.
const MaxImageBytes = 4 << 30

// ImageImporter imports an image archive into the agent's containerd
// namespace (optional). name, when set, names the archive's image index.
type ImageImporter interface {
	ImportImage(ctx context.Context, archive io.Reader, name string) ([]executor.Image, error)
}

// Evacuator starts an evacuation (optional).
type Evacuator interface {
	Evacuate() error
}

// Explainer tells why an instance is (not) routable (optional).
type Explainer interface {
	Explain(ctx context.Context, guid string) (executor.Explanation, error)
}

// NetworkFilters shows and changes the instances' network filters (optional).
type NetworkFilters interface {
	SetEgress(ctx context.Context, guid string, rules []executor.EgressRule) (executor.NetworkFilter, error)
	NetworkFilter(ctx context.Context, guid string) (executor.NetworkFilter, error)
}

// DiegoView answers a Diego cell's view for GET /v1/state (optional).
type DiegoView interface {
	DiegoState(ctx context.Context) (executor.DiegoState, error)
}

// Config wires the handler.
type Config struct {
	Client    executor.Client
	Evacuator Evacuator
	Explainer Explainer
	Images    ImageImporter
	Network   NetworkFilters
	Diego     DiegoView
	// Extra routes (e.g. /metrics, pprof) mounted as they are.
	Extra map[string]http.Handler
	// Heartbeat is how often an idle event stream gets a comment line.
	Heartbeat time.Duration
	// MaxEventStreams caps concurrent GET /v1/events subscribers; one more
	// is 503 TooManyStreams (default DefaultMaxEventStreams).
	MaxEventStreams int
}

// DefaultMaxEventStreams is the event-stream cap when Config leaves it 0:
// each stream holds a goroutine and a subscription buffer in the store.
const DefaultMaxEventStreams = 64

type handler struct {
	logger lager.Logger
	cfg    Config
	// streams counts open event streams.
	streams atomic.Int64
}

// New returns the API's http.Handler.
func New(logger lager.Logger, cfg Config) http.Handler {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.MaxEventStreams <= 0 {
		cfg.MaxEventStreams = DefaultMaxEventStreams
	}
	h := &handler{logger: logger.Session("httpapi"), cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ping", h.ping)
	mux.HandleFunc("GET /v1/state", h.state)
	mux.HandleFunc("POST /v1/allocations", h.allocate)
	mux.HandleFunc("GET /v1/containers", h.list)
	mux.HandleFunc("GET /v1/containers/{guid}", h.get)
	mux.HandleFunc("PUT /v1/containers/{guid}", h.allocateAndRun)
	mux.HandleFunc("POST /v1/containers/{guid}/run", h.run)
	mux.HandleFunc("POST /v1/containers/{guid}/stop", h.stop)
	mux.HandleFunc("DELETE /v1/containers/{guid}", h.delete)
	mux.HandleFunc("GET /v1/containers/{guid}/logs", h.logs)
	mux.HandleFunc("GET /v1/containers/{guid}/explain", h.explain)
	mux.HandleFunc("PUT /v1/containers/{guid}/egress", h.setEgress)
	mux.HandleFunc("GET /v1/containers/{guid}/network", h.networkFilter)
	mux.HandleFunc("GET /v1/events", h.events)
	mux.HandleFunc("POST /v1/evacuate", h.evacuate)
	mux.HandleFunc("POST /v1/images", h.importImage)
	for path, eh := range cfg.Extra {
		mux.Handle(path, eh)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, executor.NewError(executor.ErrContainerNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return refuseOrigin(requireContentType(canonicalOnly(mux)))
}

// canonicalOnly answers 400 InvalidRequest to paths that are not in canonical form
// instead of letting ServeMux redirect them: a client following
// "DELETE /v1/containers/x/../g1" -> 307 /v1/containers/g1 would delete g1
// through a path the guid rules were meant to reject.
func canonicalOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "" || p[0] != '/' || (p != "/" && path.Clean(p) != strings.TrimSuffix(p, "/")) || strings.Contains(p, "//") {
			writeError(w, executor.NewError(executor.ErrInvalidRequest, "invalid guid or path %q: paths must be canonical and a guid must match [A-Za-z0-9][A-Za-z0-9_-]{0,127}", p))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	e := executor.ErrorFor(err)
	writeJSON(w, e.Status, map[string]*executor.Error{"error": e})
}

// decode reads a JSON body strictly: at most MaxBodyBytes, no unknown
// fields, nothing after the value.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return executor.NewError(executor.ErrRequestTooLarge, "request body is larger than %d bytes", MaxBodyBytes)
		}
		if errors.Is(err, io.EOF) {
			return executor.NewError(executor.ErrInvalidRequest, "request body is empty; expected JSON")
		}
		return executor.NewError(executor.ErrInvalidRequest, "invalid JSON body: %v", err)
	}
	// Only whitespace may follow the value (dec.More would accept a stray
	// "}" or "]").
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return executor.NewError(executor.ErrRequestTooLarge, "request body is larger than %d bytes", MaxBodyBytes)
		}
		return executor.NewError(executor.ErrInvalidRequest, "invalid JSON body: more than one value (or trailing data after it)")
	}
	return nil
}

func (h *handler) guid(w http.ResponseWriter, r *http.Request) (string, bool) {
	guid := r.PathValue("guid")
	if err := executor.ValidateGUID(guid); err != nil {
		writeError(w, err)
		return "", false
	}
	return guid, true
}

func (h *handler) ping(w http.ResponseWriter, r *http.Request) {
	if err := h.cfg.Client.Ping(r.Context()); err != nil {
		writeError(w, executor.NewError(executor.ErrUnavailable, "containerd unreachable: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *handler) state(w http.ResponseWriter, r *http.Request) {
	st, err := h.cfg.Client.State(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	if h.cfg.Diego != nil {
		d, err := h.cfg.Diego.DiegoState(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		st.Diego = &d
	}
	writeJSON(w, http.StatusOK, st)
}

type allocationsRequest struct {
	Allocations []executor.AllocationRequest `json:"allocations"`
}

func (h *handler) allocate(w http.ResponseWriter, r *http.Request) {
	var req allocationsRequest
	if err := decode(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if len(req.Allocations) == 0 {
		writeError(w, executor.NewError(executor.ErrInvalidRequest, "allocations must not be empty"))
		return
	}
	failures, err := h.cfg.Client.Allocate(r.Context(), req.Allocations)
	if err != nil {
		writeError(w, err)
		return
	}
	if failures == nil {
		failures = []executor.AllocationFailure{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"failures": failures})
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	cs, err := h.cfg.Client.List(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"containers": cs})
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	guid, ok := h.guid(w, r)
	if !ok {
		return
	}
	c, err := h.cfg.Client.Get(r.Context(), guid)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (h *handler) allocateAndRun(w http.ResponseWriter, r *http.Request) {
	guid, ok := h.guid(w, r)
	if !ok {
		return
	}
	var req executor.RunRequest
	if err := decode(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	c, err := h.cfg.Client.AllocateAndRun(r.Context(), guid, req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

func (h *handler) run(w http.ResponseWriter, r *http.Request) {
	guid, ok := h.guid(w, r)
	if !ok {
		return
	}
	var req executor.RunRequest
	if err := decode(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := h.cfg.Client.Run(r.Context(), guid, req); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (h *handler) stop(w http.ResponseWriter, r *http.Request) {
	guid, ok := h.guid(w, r)
	if !ok {
		return
	}
	if err := h.cfg.Client.Stop(r.Context(), guid); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request) {
	guid, ok := h.guid(w, r)
	if !ok {
		return
	}
	if err := h.cfg.Client.Delete(r.Context(), guid); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) explain(w http.ResponseWriter, r *http.Request) {
	guid, ok := h.guid(w, r)
	if !ok {
		return
	}
	if h.cfg.Explainer == nil {
		writeError(w, executor.NewError(executor.ErrUnavailable, "explain is not available on this agent"))
		return
	}
	e, err := h.cfg.Explainer.Explain(r.Context(), guid)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

// importImage reads an OCI image layout (or docker save) tar archive from
// the body into containerd and answers the images it made.
func (h *handler) importImage(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Images == nil {
		writeError(w, executor.NewError(executor.ErrUnavailable, "image import is not available on this agent"))
		return
	}
	name := r.URL.Query().Get("name")
	if err := executor.ValidateImageName(name); err != nil {
		writeError(w, err)
		return
	}
	body := http.MaxBytesReader(w, r.Body, MaxImageBytes)
	imgs, err := h.cfg.Images.ImportImage(r.Context(), body, name)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			err = executor.NewError(executor.ErrInvalidRequest, "image archive larger than %d bytes", int64(MaxImageBytes))
		}
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Images []executor.Image `json:"images"`
	}{imgs})
}

func (h *handler) evacuate(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Evacuator == nil {
		writeError(w, executor.NewError(executor.ErrUnavailable, "evacuation is not available on this agent"))
		return
	}
	if err := h.cfg.Evacuator.Evacuate(); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (h *handler) logs(w http.ResponseWriter, r *http.Request) {
	guid, ok := h.guid(w, r)
	if !ok {
		return
	}
	follow := r.URL.Query().Get("follow")
	source := r.URL.Query().Get("source")
	if err := executor.ValidateLogSource(source); err != nil {
		writeError(w, err)
		return
	}
	opts := executor.LogOptions{Follow: follow == "1" || follow == "true", Source: source}
	// A followed stream ends when the server shuts down; what is already
	// written is bounded, and Shutdown waits for it.
	ctx, cancel := r.Context(), context.CancelFunc(func() {})
	if opts.Follow {
		ctx, cancel = streamContext(r)
		defer bound(w, r)()
	}
	defer cancel()
	rc, err := h.cfg.Client.Logs(ctx, guid, opts)
	if err != nil {
		writeError(w, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if opts.Follow {
		w.Header().Set("Trailer", executor.StreamEndTrailer)
		defer func() {
			if serverEnding(r) {
				w.Header().Set(executor.StreamEndTrailer, executor.StreamEndShutdown)
			}
		}()
	}
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush() // a quiet container must not hold back the headers
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	since := uint64(0)
	s := r.URL.Query().Get("since")
	if s == "" {
		s = r.Header.Get("Last-Event-ID")
	}
	if s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, executor.NewError(executor.ErrInvalidRequest, "since must be a sequence number, got %q", s))
			return
		}
		since = v
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, fmt.Errorf("streaming unsupported"))
		return
	}
	if n := h.streams.Add(1); n > int64(h.cfg.MaxEventStreams) {
		h.streams.Add(-1)
		writeError(w, executor.NewError(executor.ErrTooManyStreams, "%d event streams are open, the most this agent serves; close one or retry later", h.cfg.MaxEventStreams))
		return
	}
	defer h.streams.Add(-1)
	evs, err := h.cfg.Client.Events(r.Context(), since)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	heartbeat := time.NewTicker(h.cfg.Heartbeat)
	defer heartbeat.Stop()
	last := since // the stream's last Seq, for the client to resume after
	send := func(ev executor.Event) error {
		b, _ := json.Marshal(ev)
		if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, ev.Type, b); err != nil {
			return err
		}
		flusher.Flush()
		return nil
	}
	end := streamsEnd(r)
	defer bound(w, r)()
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				return
			}
			if err := send(ev); err != nil {
				return
			}
			last = max(last, ev.Seq)
		case <-end:
			_ = send(executor.Event{Seq: last, Type: executor.EventStreamEnded, Time: time.Now(),
				Message: fmt.Sprintf("the agent is shutting down; resume with since=%d", last)})
			return
		case <-heartbeat.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
			flusher.Flush()
		case <-r.Context().Done():
			return
		}
	}
}
