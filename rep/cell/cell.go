package cell

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/rep/api"
	"github.com/cellagent/cellagent/rep/bbs"
	"github.com/cellagent/cellagent/rep/lrp"
	"github.com/cellagent/cellagent/rep/models"
)

//go:generate go tool counterfeiter -o cellfakes/fake_bbs.go . BBS

// BBS is what the cell asks of BBS; *bbs.Client implements it.
type BBS interface {
	Claim(ctx context.Context, key *models.ActualLRPKey, inst *models.ActualLRPInstanceKey) error
	Start(ctx context.Context, s bbs.Start) error
	Crash(ctx context.Context, key *models.ActualLRPKey, inst *models.ActualLRPInstanceKey, reason string) error
	Remove(ctx context.Context, key *models.ActualLRPKey, inst *models.ActualLRPInstanceKey) error
	Fail(ctx context.Context, key *models.ActualLRPKey, reason string) error
	ActualLRPs(ctx context.Context, cellID string) ([]*models.ActualLRP, error)
	DesiredLRP(ctx context.Context, processGUID string) (*models.DesiredLRP, error)
	Task(ctx context.Context, taskGUID string) (*models.Task, error)
	StartTask(ctx context.Context, taskGUID, cellID string) (bool, error)
	CompleteTask(ctx context.Context, taskGUID, cellID string, failed bool, reason, result string) error
	DesiredLRPChanges(ctx context.Context, cellID string, connected func(), changed func(*models.DesiredLRPChangedEvent)) error
	EvacuateRunning(ctx context.Context, s bbs.Start) (bool, error)
	EvacuateClaimed(ctx context.Context, key *models.ActualLRPKey, inst *models.ActualLRPInstanceKey) (bool, error)
	EvacuateStopped(ctx context.Context, key *models.ActualLRPKey, inst *models.ActualLRPInstanceKey) (bool, error)
	EvacuateCrashed(ctx context.Context, key *models.ActualLRPKey, inst *models.ActualLRPInstanceKey, reason string) (bool, error)
	RemoveEvacuating(ctx context.Context, key *models.ActualLRPKey, inst *models.ActualLRPInstanceKey) error
}

var _ BBS = (*bbs.Client)(nil)

// Config is the cell's identity and placement settings.
type Config struct {
	CellID                string
	Zone                  string
	RepURL                string
	Stacks                map[string]string // stack -> preloaded rootfs name
	EmitRoutes            bool
	PlacementTags         []string
	OptionalPlacementTags []string
	// PreferInstanceAddress reports the container address as preferred
	// (routing.instance_address).
	PreferInstanceAddress bool
	ReconcileInterval     time.Duration // default 30s
	// EvacuationPollInterval is how often an evacuating cell asks BBS
	// again about its running instances (default 5s).
	EvacuationPollInterval time.Duration
	// AllowPrivileged is the agent's allow_privileged (lrp.Settings).
	AllowPrivileged bool
	// Routes updates running instances' routes when their desired LRP
	// changes (nil: routes stay as placed).
	Routes RouteUpdater
	// PresenceHeld answers whether the Locket presence is held (for
	// DiegoState; nil: reported as not held).
	PresenceHeld func() bool
	// Files reads tasks' result files (nil: tasks with a result_file are
	// refused).
	Files FileReader
}

// Cell is a Diego cell over a container store.
type Cell struct {
	logger lager.Logger
	cfg    Config
	store  executor.Client
	bbs    BBS
	clock  clock.Clock

	ctx    context.Context // ends when Run is signalled
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex        // guards reported, stopping and evacuating
	reported   map[string]string // instance guid -> last state reported to BBS
	stopping   map[string]bool   // instance guids BBS asked to stop
	evacuating bool              // set once, when the store starts evacuating
}

// New makes a cell; nothing happens before Run.
func New(logger lager.Logger, cfg Config, store executor.Client, b BBS, clk clock.Clock) *Cell {
	if cfg.ReconcileInterval == 0 {
		cfg.ReconcileInterval = 30 * time.Second
	}
	if cfg.EvacuationPollInterval == 0 {
		cfg.EvacuationPollInterval = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Cell{logger: logger.Session("diego-cell"), cfg: cfg, store: store, bbs: b, clock: clk,
		ctx: ctx, cancel: cancel, reported: map[string]string{}, stopping: map[string]bool{}}
}

var _ api.Cell = (*Cell)(nil)

const (
	reportedRunning   = "running"
	reportedCrashed   = "crashed"
	reportedRemoved   = "removed"
	reportedCompleted = "completed"
	bbsCallTimeout    = 15 * time.Second
)

// Log data keys, the same in every message of the cell.
const (
	keyProcessGUID  = "process-guid"
	keyIndex        = "index"
	keyInstanceGUID = "instance-guid"
)

// lrpData names an instance in log data; instanceGUID may be empty.
func lrpData(processGUID string, index int32, instanceGUID string) lager.Data {
	d := lager.Data{keyProcessGUID: processGUID, keyIndex: index}
	if instanceGUID != "" {
		d[keyInstanceGUID] = instanceGUID
	}
	return d
}

// identity is the actual LRP a container holds, read from its tags.
type identity struct {
	key  *models.ActualLRPKey
	inst *models.ActualLRPInstanceKey
}

func (c *Cell) identityOf(ctr executor.Container) (identity, bool) {
	pg, ok := ctr.Tags[lrp.TagProcessGUID]
	if !ok {
		return identity{}, false
	}
	idx, err := strconv.Atoi(ctr.Tags[lrp.TagIndex])
	if err != nil {
		return identity{}, false
	}
	return identity{
		key:  &models.ActualLRPKey{ProcessGuid: pg, Index: int32(idx), Domain: ctr.Tags[lrp.TagDomain]},
		inst: &models.ActualLRPInstanceKey{InstanceGuid: ctr.GUID, CellId: c.cfg.CellID},
	}, true
}

func tags(l api.LRP, instanceGUID string) map[string]string {
	return map[string]string{lrp.TagProcessGUID: l.ProcessGUID, lrp.TagIndex: strconv.Itoa(int(l.Index)),
		lrp.TagDomain: l.Domain, lrp.TagInstanceGUID: instanceGUID}
}

// newInstanceGUID is the first 28 characters of a UUID v4, as the rep
// makes them (rep/auctioncellrep/helpers.go).
func newInstanceGUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return (h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:])[:28], nil
}

// Ping answers whether the store (containerd) answers.
func (c *Cell) Ping(ctx context.Context) error { return c.store.Ping(ctx) }

// Run reports container changes to BBS and reconciles until signalled.
func (c *Cell) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	defer c.wg.Wait()
	defer c.cancel()
	events, err := c.store.Events(c.ctx, 0)
	if err != nil {
		return fmt.Errorf("subscribe to container events: %w", err)
	}
	close(ready)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.watchDesired()
	}()
	ticker := c.clock.NewTicker(c.cfg.ReconcileInterval)
	defer ticker.Stop()
	var evacTicker clock.Ticker // nil until the cell evacuates
	var evacPoll <-chan time.Time
	defer func() {
		if evacTicker != nil {
			evacTicker.Stop()
		}
	}()
	evacuate := func() {
		if !c.startEvacuation() {
			return
		}
		c.logger.Info("evacuating")
		evacTicker = c.clock.NewTicker(c.cfg.EvacuationPollInterval)
		evacPoll = evacTicker.C()
		c.evacuateAll()
	}
	if st, err := c.store.State(c.ctx); err == nil && st.Evacuating {
		evacuate()
	} else {
		c.syncAll()
	}
	for {
		select {
		case <-signals:
			return nil
		case <-evacPoll:
			c.evacuateAll()
		case ev, ok := <-events:
			if !ok {
				return errors.New("container event stream ended")
			}
			switch {
			case ev.Type == executor.EventCellEvacuating && ev.GUID == "":
				evacuate()
			case ev.Type == executor.EventGap:
				c.syncAll()
			case ev.Type == executor.EventContainerState || ev.Type == executor.EventContainerAdopted ||
				ev.Type == executor.EventContainerRoutable:
				c.sync(ev.GUID)
			}
		case <-ticker.C():
			c.reconcile()
		}
	}
}

// syncAll reports every Diego container's current state.
func (c *Cell) syncAll() {
	ctrs, err := c.store.List(c.ctx)
	if err != nil {
		c.logger.Error("list-containers", err)
		return
	}
	for _, ctr := range ctrs {
		c.report(ctr)
	}
}

func (c *Cell) sync(guid string) {
	ctr, err := c.store.Get(c.ctx, guid)
	if err != nil {
		return // deleted meanwhile: whoever deleted it reported it
	}
	c.report(ctr)
}

// report tells BBS the container's current state once.
func (c *Cell) report(ctr executor.Container) {
	if taskGUID, ok := ctr.Tags[lrp.TagTaskGUID]; ok {
		c.reportTask(ctr, taskGUID)
		return
	}
	id, ok := c.identityOf(ctr)
	if !ok {
		return // not a Diego container (a /v1 one)
	}
	if c.isEvacuating() {
		c.evacuateOne(ctr)
		return
	}
	data := lrpData(id.key.ProcessGuid, id.key.Index, ctr.GUID)
	data["state"] = ctr.State.String()
	logger := c.logger.Session("report", data)
	switch ctr.State {
	case executor.StateRunning:
		// Reported once routable (its routes registered, its proxy
		// verified): BBS then counts it as serving, and an evacuating
		// instance elsewhere is let go only after this one is routable.
		if !ctr.Routable || !c.markReported(ctr.GUID, reportedRunning) {
			return
		}
		ctx, cancel := context.WithTimeout(c.ctx, bbsCallTimeout)
		defer cancel()
		start := bbs.Start{Key: id.key, Instance: id.inst, Net: c.netInfo(ctr), Routable: true,
			AvailabilityZone: c.cfg.Zone, MetricTags: metricTags(ctr)}
		if err := c.bbs.Start(ctx, start); err != nil {
			logger.Error("start-actual-lrp", err)
			c.forget(ctr.GUID)
			return
		}
		logger.Info("started")
	case executor.StateCompleted:
		c.mu.Lock()
		stopping := c.stopping[ctr.GUID]
		c.mu.Unlock()
		if stopping {
			return // the stop path removes it
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.finish(logger, ctr, id)
		}()
	}
}

// finish reports a completed container crashed (or removed, when it was
// stopped locally) and deletes it.
func (c *Cell) finish(logger lager.Logger, ctr executor.Container, id identity) {
	ctx, cancel := context.WithTimeout(c.ctx, bbsCallTimeout)
	defer cancel()
	if _, err := c.store.Get(ctx, ctr.GUID); errors.Is(err, executor.ErrContainerNotFound) {
		// A replayed event of a container another finish already reported
		// and deleted (it forgets the guid only after the delete).
		return
	}
	if ctr.RunResult.Stopped {
		if c.markReported(ctr.GUID, reportedRemoved) {
			if err := c.bbs.Remove(ctx, id.key, id.inst); err != nil {
				logger.Error("remove-actual-lrp", err)
			}
		}
	} else if c.markReported(ctr.GUID, reportedCrashed) {
		if err := c.bbs.Crash(ctx, id.key, id.inst, ctr.RunResult.FailureReason); err != nil {
			logger.Error("crash-actual-lrp", err)
		} else {
			logger.Info("crashed", lager.Data{"reason": ctr.RunResult.FailureReason})
		}
	}
	c.delete(logger, ctr.GUID)
}

func (c *Cell) delete(logger lager.Logger, guid string) {
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	if err := c.store.Delete(ctx, guid); err != nil && !errors.Is(err, executor.ErrContainerNotFound) {
		logger.Error("delete-container", err)
		return
	}
	c.forget(guid)
}

// markReported records state as reported for guid; false when it was already.
func (c *Cell) markReported(guid, state string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reported[guid] == state {
		return false
	}
	c.reported[guid] = state
	return true
}

func (c *Cell) forget(guid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.reported, guid)
	delete(c.stopping, guid)
}

func (c *Cell) netInfo(ctr executor.Container) *models.ActualLRPNetInfo {
	n := &models.ActualLRPNetInfo{Address: ctr.ExternalIP, InstanceAddress: ctr.InternalIP,
		PreferredAddress: models.ActualLRPNetInfo_HOST}
	if c.cfg.PreferInstanceAddress {
		n.PreferredAddress = models.ActualLRPNetInfo_INSTANCE
	}
	for _, p := range ctr.Ports {
		n.Ports = append(n.Ports, &models.PortMapping{ContainerPort: uint32(p.ContainerPort), HostPort: uint32(p.HostPort),
			ContainerTlsProxyPort: uint32(p.ContainerTLSProxyPort), HostTlsProxyPort: uint32(p.HostTLSProxyPort)})
	}
	return n
}

// metricTags are the resolved tags stored on the container at placement.
func metricTags(ctr executor.Container) map[string]string {
	out := map[string]string{}
	for k, v := range ctr.Tags {
		if name, ok := strings.CutPrefix(k, metricTagPrefix); ok {
			out[name] = v
		}
	}
	return out
}

const metricTagPrefix = "diego.metric-tag."
