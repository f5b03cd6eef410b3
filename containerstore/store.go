package containerstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/backoff"
	"github.com/cellagent/cellagent/logfile"
)

const (
	guidKey  = "container-guid"
	errorKey = "error"
)

// Config is the store's part of the agent's configuration.
type Config struct {
	CellID, Zone          string
	DataDir               string
	Capacity              executor.ResourceTotals
	ReservedExpiration    time.Duration
	DefaultStartTimeout   time.Duration
	DefaultStopGrace      time.Duration
	ProxyMemoryOverheadMB int
	LogMaxBytes           int64
	DefaultUser           string
	// ExternalIP is the cell's address, used in host network mode.
	ExternalIP  string
	EventBuffer int
	// EvacuationTimeout is how long an evacuating cell waits for the
	// orchestrator to delete its instances before stopping them itself.
	EvacuationTimeout time.Duration
	// HealthInterval is how often a running container's readiness is
	// checked again (0 = never).
	HealthInterval time.Duration
	// DrainWindow is waited between unregistering routes and SIGTERM.
	DrainWindow time.Duration
	// DefaultMaxPids is the pids limit of an instance whose request sets
	// none (0: none; config default_max_pids).
	DefaultMaxPids int
	// AllowPrivileged lets a request with privileged: true run as uid 0
	// or gid 0 (config allow_privileged).
	AllowPrivileged bool
	// DiskReserveMB is kept free under DataDir for the agent's records,
	// rotations and logs: below it no container is reserved.
	DiskReserveMB int
}

// Deps are the parts the store drives.
type Deps struct {
	Runtime ContainerRuntime
	Tasks   TaskRunner
	// Pipeline is each container's steps, in order.
	Pipeline Pipeline
	Clock    clock.Clock
	// NATSState answers the route emitter's connection state for /v1/state.
	NATSState func() string
	// Usage answers a running container's memory use, app and proxy apart.
	Usage func(guid string) *executor.MemoryUsage
	// DiskUsage answers the bytes a container's writable layer holds
	// (disk_mb enforcement; nil: not enforced).
	DiskUsage func(ctx context.Context, guid string) (int64, error)
	// Inbox is where the parts beside the store send their notices
	// (notices.go); nil: none do.
	Inbox *Inbox
	// Presence is told the cell's figures at New and at every change of
	// them (the route emitter publishes the latest for discovery). It is
	// called with the store's lock held, in the order of the changes: it
	// must not block or call the store.
	Presence func(Presence)
}

// Presence is what the cell offers, as the store's accounting has it
// (State's figures without the disk and NATS ones).
type Presence struct {
	Total, Available executor.ResourceTotals
	// Containers counts the containers in any state, reservations too.
	Containers int
	Evacuating bool
}

// presenceChangedLocked tells Deps.Presence the figures as they are now;
// every change of the container map, the capacity or evacuating calls it,
// with s.mu held.
func (s *Store) presenceChangedLocked() {
	if s.deps.Presence == nil {
		return
	}
	s.deps.Presence(Presence{Total: s.cap.total, Available: s.cap.available(),
		Containers: len(s.containers), Evacuating: s.evacuating})
}

// container is one container's in-memory state. Store.mu guards every
// field but opMu and the channels, which are set once.
type container struct {
	opMu sync.Mutex // serialises stop and delete

	info    executor.Container
	request executor.RunRequest
	user    User
	inst    *Instance
	need    executor.ResourceTotals
	// overheadMB is the proxy memory held beside the app's: the cell's
	// overhead while the ports are unknown (a reservation), none once the
	// run request has no ports (no ports, no proxy).
	overheadMB int
	reserved   time.Time

	stopping   bool
	failReason string               // set by Fail: the stop is a failure, not a request
	failCode   executor.FailureCode // set with failReason
	// signalled and appExited order a stop's signal against the app's own
	// exit: whichever is marked first decides whether a Fail's reason or
	// the app's exit status is the result.
	signalled, appExited bool
	deleted              bool
	cancelStart          context.CancelFunc
	// Registration order (routes.go): unroutes counts unroutes; routing
	// is closed when the route or route update that talks to the route
	// hook ends (nil: none does), and cancelRouting ends its Verify.
	unroutes      uint64
	routing       chan struct{}
	cancelRouting context.CancelFunc
	exited        chan struct{} // closed when the task's exit was seen
	done          chan struct{} // closed when the lifecycle goroutine ends
	// notices holds what the store handed to the lifecycle goroutine while
	// owned (its goroutine runs) is set (notices.go).
	notices *Inbox
	owned   bool
}

// Store is the container store; it implements executor.Client.
type Store struct {
	cfg   Config
	deps  Deps
	hooks []Step // deps.Pipeline.Steps(), in order
	// readiness are the steps that are a Readiness (the proxy), in order.
	readiness []Readiness
	logger    lager.Logger
	events    *eventHub

	rootCtx    context.Context
	rootCancel context.CancelFunc
	wg         sync.WaitGroup // lifecycle goroutines

	persistMu  sync.Mutex // serialises record writes and removals (see save)
	mu         sync.Mutex // guards containers, cap, evacuating and every container's fields
	containers map[string]*container
	cap        capacity
	evacuating bool

	evacuateCh chan struct{} // closed by Evacuate
}

var _ executor.Client = (*Store)(nil)

// New makes a store. Call Run (ifrit) to recover and supervise.
func New(logger lager.Logger, cfg Config, deps Deps) (*Store, error) {
	if deps.Clock == nil {
		deps.Clock = clock.NewClock()
	}
	if cfg.EventBuffer <= 0 {
		cfg.EventBuffer = 4096
	}
	if cfg.DefaultUser == "" {
		cfg.DefaultUser = "vcap"
	}
	if cfg.EvacuationTimeout <= 0 {
		cfg.EvacuationTimeout = 10 * time.Minute
	}
	for _, d := range []string{"containers", "logs"} {
		if err := os.MkdirAll(filepath.Join(cfg.DataDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("make data dir: %w", err)
		}
	}
	hooks := deps.Pipeline.Steps()
	var readiness []Readiness
	for _, h := range hooks {
		if r, ok := h.(Readiness); ok {
			readiness = append(readiness, r)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		cfg: cfg, deps: deps, hooks: hooks, readiness: readiness, logger: logger.Session("containerstore"),
		events:     newEventHub(cfg.EventBuffer, deps.Clock.Now()),
		rootCtx:    ctx,
		rootCancel: cancel,
		containers: map[string]*container{},
		cap:        capacity{total: cfg.Capacity},
		evacuateCh: make(chan struct{}),
	}
	s.mu.Lock()
	s.presenceChangedLocked()
	s.mu.Unlock()
	return s, nil
}

// Runner recovers containers from containerd and the records, then
// expires reservations until signalled. On a signal it stops supervising
// and returns; containers keep running.
func (s *Store) Runner() ifrit.Runner { return ifrit.RunFunc(s.run) }

func (s *Store) run(signals <-chan os.Signal, ready chan<- struct{}) error {
	logger := s.logger.Session("run")
	if err := s.Recover(logger); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	close(ready)
	interval := s.cfg.ReservedExpiration / 4
	if interval <= 0 || interval > time.Second {
		interval = time.Second
	}
	ticker := s.deps.Clock.NewTicker(interval)
	defer ticker.Stop()
	var evacDeadline <-chan time.Time
	evacuate := s.evacuateCh
	for {
		select {
		case <-signals:
			logger.Info("stop-supervising")
			s.rootCancel()
			s.wg.Wait()
			return nil
		case <-s.deps.Inbox.ready():
			for _, n := range s.deps.Inbox.take() {
				s.dispatch(n)
			}
		case <-ticker.C():
			s.expireReservations(logger)
			if evacuate == nil && s.count() == 0 {
				logger.Info("evacuated-exiting")
				s.rootCancel()
				s.wg.Wait()
				return nil
			}
		case <-evacuate:
			evacuate = nil
			logger.Info("evacuating", lager.Data{"timeout": s.cfg.EvacuationTimeout.String()})
			t := s.deps.Clock.NewTimer(s.cfg.EvacuationTimeout)
			defer t.Stop()
			evacDeadline = t.C()
		case <-evacDeadline:
			evacDeadline = nil
			// Deleting can take minutes; keep answering signals meanwhile.
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.evacuateAll(logger)
			}()
		}
	}
}

func (s *Store) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.containers)
}

// Evacuate makes the cell refuse new work; running instances stay until
// the orchestrator deletes them or EvacuationTimeout passes, when they are
// stopped (routes first) and deleted. The store's runner then returns, and
// with it the agent.
func (s *Store) Evacuate() error {
	s.mu.Lock()
	if s.evacuating {
		s.mu.Unlock()
		return nil
	}
	s.evacuating = true
	s.presenceChangedLocked()
	s.mu.Unlock()
	s.publish(executor.EventCellEvacuating, "", "cell is evacuating: no new containers; instances stay until deleted or "+s.cfg.EvacuationTimeout.String(), nil)
	close(s.evacuateCh)
	return nil
}

// evacuateAll stops and deletes every container, a few at a time. A
// delete that fails (a teardown step refused) is tried again, 1s, 2s, 4s
// ... up to 30s apart, until it succeeds or the agent stops: the agent
// exits only when no container is left, so giving up would leave an
// evacuating cell running forever with nothing to retry it.
func (s *Store) evacuateAll(logger lager.Logger) {
	retry := backoff.New(s.deps.Clock, time.Second, 30*time.Second)
	for attempt := 1; ; attempt++ {
		s.mu.Lock()
		guids := make([]string, 0, len(s.containers))
		for g := range s.containers {
			guids = append(guids, g)
		}
		s.mu.Unlock()
		if len(guids) == 0 {
			return
		}
		logger.Info("evacuation-timeout-stopping", lager.Data{"containers": len(guids), "attempt": attempt})
		sem := make(chan struct{}, 8)
		var wg sync.WaitGroup
		for _, g := range guids {
			wg.Add(1)
			sem <- struct{}{}
			go func(g string) {
				defer wg.Done()
				defer func() { <-sem }()
				if err := s.Delete(s.rootCtx, g); err != nil && !errors.Is(err, executor.ErrContainerNotFound) {
					logger.Error("evacuation-delete", err, lager.Data{guidKey: g, "attempt": attempt})
					s.publish(executor.EventCellEvacuating, g, fmt.Sprintf("delete failed, retrying in %s: %v", retry.Current(), err), nil)
				}
			}(g)
		}
		wg.Wait()
		if s.count() == 0 {
			return
		}
		if !retry.Wait(s.rootCtx.Done()) {
			return
		}
	}
}

func (s *Store) expireReservations(logger lager.Logger) {
	if s.cfg.ReservedExpiration <= 0 {
		return
	}
	now := s.deps.Clock.Now()
	s.mu.Lock()
	var expired []*container
	for guid, c := range s.containers {
		if c.info.State == executor.StateReserved && now.Sub(c.reserved) >= s.cfg.ReservedExpiration {
			delete(s.containers, guid)
			s.cap.release(c.need)
			c.deleted = true
			expired = append(expired, c)
		}
	}
	if len(expired) > 0 {
		s.presenceChangedLocked()
	}
	s.mu.Unlock()
	for _, c := range expired {
		logger.Info("reservation-expired", lager.Data{guidKey: c.info.GUID})
		s.publish(executor.EventReservationExpired, c.info.GUID, "reservation not run within "+s.cfg.ReservedExpiration.String(), nil)
	}
}

func (s *Store) publish(typ, guid, msg string, ctr *executor.Container) {
	s.events.publish(executor.Event{Type: typ, GUID: guid, Time: s.deps.Clock.Now(), Message: msg, Container: ctr})
}

// publishCompleted publishes the completion of guid (snap is completed)
// with its failure code.
func (s *Store) publishCompleted(guid, msg string, snap *executor.Container) {
	s.events.publish(executor.Event{Type: executor.EventContainerState, GUID: guid, Time: s.deps.Clock.Now(), Message: msg,
		FailureCode: snap.RunResult.FailureCode, Container: snap})
}

func (s *Store) Ping(ctx context.Context) error { return s.deps.Tasks.Ping(ctx) }

func (s *Store) State(ctx context.Context) (executor.CellState, error) {
	free, low := s.diskLow()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := executor.CellState{
		CellID: s.cfg.CellID, Zone: s.cfg.Zone, Evacuating: s.evacuating,
		Total: s.cap.total, Available: s.cap.available(),
		ProxyMemoryOverheadMB: s.cfg.ProxyMemoryOverheadMB,
		Containers:            map[string]int{},
		NATS:                  "disabled",
		DiskFreeMB:            free,
		DiskLow:               low,
	}
	for _, state := range executor.States {
		st.Containers[state.String()] = 0
	}
	for _, c := range s.containers {
		st.Containers[c.info.State.String()]++
	}
	if s.deps.NATSState != nil {
		st.NATS = s.deps.NATSState()
	}
	return st, nil
}

func (s *Store) Allocate(ctx context.Context, reqs []executor.AllocationRequest) ([]executor.AllocationFailure, error) {
	var failures []executor.AllocationFailure
	for _, r := range reqs {
		// The ports come with the run: hold the proxy's memory until then.
		if err := s.reserve(r.GUID, r.Resources, r.Tags, s.cfg.ProxyMemoryOverheadMB); err != nil {
			failures = append(failures, executor.AllocationFailure{GUID: r.GUID, Error: executor.ErrorFor(err)})
		}
	}
	return failures, nil
}

// overheadFor is the proxy memory an instance with ports needs: a proxy
// runs only beside an app that listens.
func (s *Store) overheadFor(ports []uint16) int {
	if len(ports) == 0 {
		return 0
	}
	return s.cfg.ProxyMemoryOverheadMB
}

func (s *Store) reserve(guid string, res executor.Resources, tags map[string]string, overheadMB int) error {
	if err := executor.ValidateGUID(guid); err != nil {
		return err
	}
	if err := executor.ValidateResources(res); err != nil {
		return err
	}
	if free, low := s.diskLow(); low {
		return executor.NewError(executor.ErrInsufficientResources, "disk low: %d MB free under data_dir, %d MB are kept for the agent's records, rotations and logs", free, s.cfg.DiskReserveMB)
	}
	s.mu.Lock()
	if s.evacuating {
		s.mu.Unlock()
		return executor.NewError(executor.ErrEvacuating, "cell %s is evacuating and takes no new containers", s.cfg.CellID)
	}
	if _, ok := s.containers[guid]; ok {
		s.mu.Unlock()
		return executor.NewError(executor.ErrContainerExists, "container %s already exists", guid)
	}
	need := s.cap.need(res, overheadMB)
	if err := s.cap.reserve(need); err != nil {
		s.mu.Unlock()
		return err
	}
	now := s.deps.Clock.Now()
	c := &container{
		info: executor.Container{GUID: guid, State: executor.StateReserved, Tags: tags, Resources: res,
			MemoryLimitBytes: uint64(res.MemoryMB+overheadMB) << 20,
			Ports:            []executor.PortMapping{}, CreatedAt: now, UpdatedAt: now},
		need: need, overheadMB: overheadMB, reserved: now,
		exited: make(chan struct{}), done: make(chan struct{}), notices: NewInbox(),
	}
	s.containers[guid] = c
	s.presenceChangedLocked()
	snap := c.info
	s.mu.Unlock()
	s.publish(executor.EventContainerReserved, guid, fmt.Sprintf("reserved %d MB memory, %d MB disk", need.MemoryMB, need.DiskMB), &snap)
	return nil
}

// validateRun checks a run request before anything changes.
func (s *Store) validateRun(ctx context.Context, req *executor.RunRequest, requireResources bool) error {
	if err := req.Validate(requireResources); err != nil {
		return err
	}
	validators := []any{}
	for _, h := range s.hooks {
		validators = append(validators, h)
	}
	validators = append(validators, s.deps.Pipeline.Routes)
	for _, h := range validators {
		if v, ok := h.(RequestValidator); ok {
			if err := v.ValidateRequest(req); err != nil {
				var apiErr *executor.Error
				if errors.As(err, &apiErr) {
					return err
				}
				return executor.NewError(executor.ErrInvalidRequest, "%v", err)
			}
		}
	}
	if hc, ok := s.deps.Pipeline.Network.(HostPortChecker); ok {
		if err := hc.CheckHostPorts(s.deps.Pipeline.hostPortsNeeded(req)); err != nil {
			return err
		}
	}
	user := req.Process.User
	if user == "" {
		user = s.cfg.DefaultUser
	}
	if err := s.checkPrivilegeRequest(req, user); err != nil {
		return err
	}
	return s.deps.Runtime.Validate(ctx, req.Image, user)
}

func (s *Store) Run(ctx context.Context, guid string, req executor.RunRequest) error {
	if err := executor.ValidateGUID(guid); err != nil {
		return err
	}
	if req.Resources != nil {
		return executor.NewError(executor.ErrInvalidRequest, "resources come with the allocation; leave them out of run")
	}
	if _, err := s.lookup(guid); err != nil {
		return err
	}
	if err := s.validateRun(ctx, &req, false); err != nil {
		return err
	}
	return s.startRun(guid, req)
}

func (s *Store) AllocateAndRun(ctx context.Context, guid string, req executor.RunRequest) (executor.Container, error) {
	if err := executor.ValidateGUID(guid); err != nil {
		return executor.Container{}, err
	}
	if err := s.validateRun(ctx, &req, true); err != nil {
		return executor.Container{}, err
	}
	if err := s.reserve(guid, *req.Resources, req.Tags, s.overheadFor(req.Ports)); err != nil {
		return executor.Container{}, err
	}
	if err := s.startRun(guid, req); err != nil {
		s.dropReservation(guid)
		return executor.Container{}, err
	}
	return s.Get(ctx, guid)
}

func (s *Store) dropReservation(guid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.containers[guid]; ok && c.info.State == executor.StateReserved {
		delete(s.containers, guid)
		s.cap.release(c.need)
		c.deleted = true
		s.presenceChangedLocked()
	}
}

// startRun moves a reserved container to initializing and starts its
// lifecycle goroutine.
func (s *Store) startRun(guid string, req executor.RunRequest) error {
	s.mu.Lock()
	c, ok := s.containers[guid]
	if !ok || c.deleted {
		s.mu.Unlock()
		return executor.NewError(executor.ErrContainerNotFound, "container %s not found", guid)
	}
	if req.Process.User == "" {
		req.Process.User = s.cfg.DefaultUser
	}
	if req.StartTimeout == 0 {
		req.StartTimeout = executor.Duration(s.cfg.DefaultStartTimeout)
	}
	if req.StopGrace == 0 {
		req.StopGrace = executor.Duration(s.cfg.DefaultStopGrace)
	}
	if err := s.transitionLocked(c, executor.StateInitializing); err != nil {
		s.mu.Unlock()
		return err
	}
	c.request = req
	if extra := c.overheadMB - s.overheadFor(req.Ports); extra > 0 {
		// A reservation held proxy memory for a run without ports.
		s.cap.release(executor.ResourceTotals{MemoryMB: extra})
		s.presenceChangedLocked()
		c.need.MemoryMB -= extra
		c.overheadMB -= extra
		c.info.MemoryLimitBytes = uint64(c.info.Resources.MemoryMB+c.overheadMB) << 20
	}
	c.info.LogGUID, c.info.Index, c.info.Image, c.info.Routes = req.LogGUID, req.Index, req.Image, req.Routes
	if req.Tags != nil {
		c.info.Tags = req.Tags
	}
	startCtx, cancel := context.WithCancel(s.rootCtx)
	c.cancelStart = cancel
	c.own()
	snap := c.info
	s.mu.Unlock()
	s.save(c)
	s.publish(executor.EventContainerState, guid, "state initializing: image "+req.Image, &snap)
	s.wg.Add(1)
	go s.lifecycle(startCtx, c)
	return nil
}

// transitionLocked is the only writer of a container's state.
func (s *Store) transitionLocked(c *container, to executor.State) error {
	if err := checkTransition(c.info.State, to); err != nil {
		return fmt.Errorf("container %s: %w", c.info.GUID, err)
	}
	c.info.State = to
	c.info.UpdatedAt = s.deps.Clock.Now()
	return nil
}

func (s *Store) recordLocked(c *container) record {
	r := record{Container: c.info, Request: c.request, User: c.user, Overhead: c.overheadMB}
	if c.inst != nil {
		r.NetNSPath = c.inst.NetNSPath
	}
	return r
}

// save writes c's record. persistMu serialises the writes, so an older
// snapshot never overwrites a newer one, and a deleted container's record
// is never written back after Delete removed it.
func (s *Store) save(c *container) {
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	s.mu.Lock()
	if c.deleted {
		s.mu.Unlock()
		return
	}
	r := s.recordLocked(c)
	s.mu.Unlock()
	if err := s.writeRecord(r); err != nil {
		s.logger.Error("failed-to-persist-record", err, lager.Data{guidKey: r.Container.GUID})
	}
}

func (s *Store) lookup(guid string) (*container, error) {
	if err := executor.ValidateGUID(guid); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[guid]
	if !ok || c.deleted {
		return nil, executor.NewError(executor.ErrContainerNotFound, "container %s not found", guid)
	}
	return c, nil
}

func (s *Store) List(ctx context.Context) ([]executor.Container, error) {
	s.mu.Lock()
	out := make([]executor.Container, 0, len(s.containers))
	for _, c := range s.containers {
		out = append(out, s.viewLocked(c))
	}
	s.mu.Unlock()
	if s.deps.Usage != nil {
		for i := range out {
			if out[i].State == executor.StateRunning {
				out[i].Memory = s.deps.Usage(out[i].GUID)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GUID < out[j].GUID })
	return out, nil
}

func (s *Store) Get(ctx context.Context, guid string) (executor.Container, error) {
	c, err := s.lookup(guid)
	if err != nil {
		return executor.Container{}, err
	}
	s.mu.Lock()
	v := s.viewLocked(c)
	s.mu.Unlock()
	if s.deps.Usage != nil && v.State == executor.StateRunning {
		v.Memory = s.deps.Usage(guid)
	}
	return v, nil
}

func (s *Store) viewLocked(c *container) executor.Container {
	v := c.info
	v.Ports = append([]executor.PortMapping{}, c.info.Ports...)
	return v
}

func (s *Store) logPath(guid string) string {
	return LogPath(s.cfg.DataDir, guid, executor.LogSourceApp)
}

// LogPath is where the output of source (executor.LogSourceApp or
// executor.LogSourceProxy) of container guid is kept.
func LogPath(dataDir, guid, source string) string {
	return filepath.Join(dataDir, "logs", guid, source+".log")
}

// Logs reads one source untouched, or both tagged line by line.
func (s *Store) Logs(ctx context.Context, guid string, opts executor.LogOptions) (io.ReadCloser, error) {
	if err := executor.ValidateLogSource(opts.Source); err != nil {
		return nil, err
	}
	if _, err := s.lookup(guid); err != nil {
		return nil, err
	}
	if opts.Source == executor.LogSourceApp || opts.Source == executor.LogSourceProxy {
		r, err := logfile.Open(ctx, LogPath(s.cfg.DataDir, guid, opts.Source), opts.Follow, 0)
		if os.IsNotExist(err) {
			// Nothing written yet (a proxy that has not started, or
			// none at all).
			return io.NopCloser(strings.NewReader("")), nil
		}
		return r, err
	}
	return logfile.OpenTagged(ctx, []logfile.Source{
		{Tag: executor.LogSourceApp, Path: LogPath(s.cfg.DataDir, guid, executor.LogSourceApp)},
		{Tag: executor.LogSourceProxy, Path: LogPath(s.cfg.DataDir, guid, executor.LogSourceProxy)},
	}, opts.Follow, 0)
}

func (s *Store) Events(ctx context.Context, since uint64) (<-chan executor.Event, error) {
	return s.events.subscribe(ctx, since), nil
}

// LastEventSeq is the newest event's sequence number.
func (s *Store) LastEventSeq() uint64 { return s.events.lastSeq() }
