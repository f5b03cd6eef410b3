package routeemitter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats.go"
	"github.com/tedsuo/ifrit"

	"github.com/cellagent/cellagent/routeemitter/routetable"
)

const (
	// greetRetryInterval and greetMaxTries: router.greet is re-sent every
	// second until a router answers, at most 30 times (as Diego does).
	greetRetryInterval = time.Second
	greetMaxTries      = 30
	// startJitterFraction: after router.start, everything is re-emitted
	// within a random delay of up to this fraction of the interval, so that
	// all cells do not answer a restarting router at the same instant.
	startJitterFraction = 0.2
	// emitJitterFraction: periodic re-emission happens up to this fraction
	// of the interval early (rather than late: Gorouter prunes what is not
	// re-registered), spreading cells apart.
	emitJitterFraction = 0.05

	// loopResolution is how often the loop looks for due work; every
	// schedule here is in whole seconds.
	loopResolution = time.Second

	logKeyGUID = "container-guid"
)

// ErrNotConnected is wrapped by Unregister when the message could not be
// confirmed by the NATS server; it is sent on (re)connect.
var ErrNotConnected = errors.New("not connected to nats")

// Connection states answered by ConnectionState.
const (
	StateConnected    = "connected"
	StateReconnecting = "reconnecting"
	StateDisconnected = "disconnected"
	StateClosed       = "closed"
)

// Emitter registers the cell's routes with Gorouter over NATS and publishes
// the cell presence. It is an ifrit.Runner; Register, Unregister and Recover
// may be called at any time, also before Run.
type Emitter struct {
	logger   lager.Logger
	cfg      Config
	urls     []string
	clock    clock.Clock
	presence func() CellPresence
	journal  journal
	wake     chan struct{}

	// journalMu serializes journal writes so they land in the order their
	// snapshots were taken.
	journalMu sync.Mutex
	// journalWrites counts the journal writes begun (guarded by journalMu).
	journalWrites int

	mu sync.Mutex
	// guarded by mu:
	nc         *nats.Conn
	registered map[string][]routetable.RegistryMessage // guid -> what is registered and re-emitted
	journaled  map[string][]routetable.RegistryMessage // guid -> found in the journal, awaiting Register or Recover
	adoptBy    time.Time                               // set by Recover: journaled guids not claimed by then are unregistered
	tombstones map[string]*tombstone
	// unsaved counts, per guid, the Registers whose change is not in the
	// journal yet: its registration is not sent, nor re-emitted, before.
	unsaved      map[string]int
	interval     time.Duration
	nextEmit     time.Time
	promptEmit   time.Time // zero: none scheduled
	greetInbox   string
	greetTries   int
	greetNext    time.Time // zero: not greeting
	hellos       []routerHello
	connected    bool // a (re)connect happened that the loop has not handled
	online       bool // the loop handled the latest connect and no disconnect came since
	journalDirty bool
	// journalGen counts the turns taken in saveJournal; journalSaved is the
	// count at the snapshot of the last journal write that landed.
	journalGen, journalSaved uint64
}

var _ ifrit.Runner = (*Emitter)(nil)

// routerHello is the body of router.start and of the reply to router.greet.
type routerHello struct {
	ID                               string   `json:"id"`
	Hosts                            []string `json:"hosts"`
	MinimumRegisterIntervalInSeconds int      `json:"minimumRegisterIntervalInSeconds"`
	PruneThresholdInSeconds          int      `json:"pruneThresholdInSeconds"`

	start bool // router.start, not a greet reply
}

// New prepares an Emitter and loads the route journal; presence answers the
// cell state to publish (nil: no presence). An unreadable journal is moved
// aside and logged, not fatal: the agent must start.
func New(logger lager.Logger, cfg Config, presence func() CellPresence) (*Emitter, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("route emitter config: %w", err)
	}
	urls := cfg.URLs
	if len(urls) == 0 {
		urls = []string{"nats://" + cfg.EmbeddedListen}
	}
	e := &Emitter{
		logger:     logger.Session("routeemitter"),
		cfg:        cfg,
		urls:       urls,
		clock:      cfg.Clock,
		presence:   presence,
		journal:    newJournal(cfg.DataDir),
		wake:       make(chan struct{}, 1),
		registered: map[string][]routetable.RegistryMessage{},
		journaled:  map[string][]routetable.RegistryMessage{},
		tombstones: map[string]*tombstone{},
		unsaved:    map[string]int{},
		interval:   cfg.DefaultRegisterInterval,
	}
	e.nextEmit = e.clock.Now().Add(e.jittered(e.interval))

	st, err := e.journal.load()
	if err != nil {
		e.logger.Error("unreadable-route-journal", err)
		if qerr := e.journal.quarantine(); qerr != nil {
			return nil, qerr
		}
	}
	now := e.clock.Now()
	for guid, msgs := range st.Registered {
		if len(msgs) > 0 {
			e.journaled[guid] = msgs
		}
	}
	for guid, msgs := range st.Tombstones {
		if len(msgs) > 0 {
			e.tombstones[guid] = &tombstone{msgs: msgs, start: now}
		}
	}
	return e, nil
}

// ConnectionState answers "connected", "reconnecting", "disconnected" or
// "closed", for /v1/state.
func (e *Emitter) ConnectionState() string {
	e.mu.Lock()
	nc := e.nc
	e.mu.Unlock()
	if nc == nil {
		return StateDisconnected
	}
	switch nc.Status() {
	case nats.CONNECTED:
		return StateConnected
	case nats.RECONNECTING, nats.CONNECTING:
		return StateReconnecting
	case nats.CLOSED, nats.DRAINING_SUBS, nats.DRAINING_PUBS:
		return StateClosed
	default:
		return StateDisconnected
	}
}

// RegisterInterval answers the re-registration interval in force: the
// default, or what a router last announced.
func (e *Emitter) RegisterInterval() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.interval
}

// Run connects to NATS (retrying forever; ready does not wait for the
// connection), greets the routers, re-emits registrations, repeats
// unregistrations and publishes presence until signalled. It leaves routes
// registered and deletes the presence key.
func (e *Emitter) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	logger := e.logger.Session("run", lager.Data{"urls": e.urls})
	nc, err := e.connect(logger)
	if err != nil {
		return err
	}
	// The connect handlers tell the loop when the connection is up (also
	// when it came up inside nats.Connect).
	e.mu.Lock()
	e.nc = nc
	e.mu.Unlock()

	ctx, stopPresence := context.WithCancel(context.Background())
	presenceDone := make(chan struct{})
	go func() {
		defer close(presenceDone)
		e.runPresence(ctx, logger, nc)
	}()

	// Armed before ready, so a test's first clock increment reaches it.
	ticker := e.clock.NewTicker(loopResolution)
	close(ready)
	logger.Info("started")
	e.loop(logger, signals, ticker)

	stopPresence()
	<-presenceDone
	e.mu.Lock()
	e.nc = nil
	e.mu.Unlock()
	if err := nc.FlushTimeout(e.cfg.FlushTimeout); err != nil {
		logger.Info("final-flush-failed", lager.Data{"error": err.Error()})
	}
	nc.Close()
	logger.Info("stopped")
	return nil
}

func (e *Emitter) connect(logger lager.Logger) (*nats.Conn, error) {
	onConnect := func(*nats.Conn) {
		logger.Info("nats-connected")
		e.mu.Lock()
		e.connected = true
		e.mu.Unlock()
		e.poke()
	}
	opts := []nats.Option{
		nats.Name("cellagent-" + e.cfg.CellID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(e.cfg.ReconnectWait),
		nats.RetryOnFailedConnect(true),
		nats.ConnectHandler(onConnect),
		nats.ReconnectHandler(onConnect),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			logger.Info("nats-disconnected", lager.Data{"error": fmt.Sprint(err)})
			e.mu.Lock()
			e.online = false
			e.mu.Unlock()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			logger.Error("nats-async-error", err)
		}),
	}
	if a := e.cfg.EmbeddedAuth; len(e.cfg.URLs) == 0 && a.User != "" {
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	if len(e.cfg.URLs) > 0 && e.cfg.CredentialsFile != "" {
		opts = append(opts, nats.UserCredentials(e.cfg.CredentialsFile))
	}
	if len(e.cfg.URLs) > 0 && e.cfg.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(e.cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed %s: %w", e.cfg.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	}
	if t := e.cfg.TLS; t.CACert != "" && len(e.cfg.URLs) > 0 {
		opts = append(opts, nats.RootCAs(t.CACert))
		if t.Cert != "" {
			opts = append(opts, nats.ClientCert(t.Cert, t.Key))
		}
	}
	nc, err := nats.Connect(strings.Join(e.urls, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	inbox := nc.NewRespInbox()
	for subject, start := range map[string]bool{routetable.SubjectStart: true, inbox: false} {
		_, err := nc.Subscribe(subject, func(msg *nats.Msg) { e.onHello(logger, msg, start) })
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
		}
	}
	e.mu.Lock()
	e.greetInbox = inbox
	e.mu.Unlock()
	return nc, nil
}

// onHello records a router.start or greet reply for the loop. It runs on a
// nats.go subscription goroutine.
func (e *Emitter) onHello(logger lager.Logger, msg *nats.Msg, start bool) {
	if len(msg.Data) == 0 || msg.Header.Get("Status") == "503" {
		return // "no responders" to router.greet: no router is listening yet
	}
	var h routerHello
	if err := json.Unmarshal(msg.Data, &h); err != nil {
		logger.Error("bad-router-hello", err, lager.Data{"subject": msg.Subject})
		return
	}
	h.start = start
	e.mu.Lock()
	e.hellos = append(e.hellos, h)
	e.mu.Unlock()
	e.poke()
}

// poke wakes the loop without blocking; one pending wake is enough since
// the loop looks at all state when it wakes.
func (e *Emitter) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// loop does what is due on every tick of a coarse ticker, and at once when
// poked. Deadlines are absolute times checked against the clock, so no timer
// is re-armed on every change (and a fake clock needs no coordination).
func (e *Emitter) loop(logger lager.Logger, signals <-chan os.Signal, ticker clock.Ticker) {
	defer ticker.Stop()
	for {
		if e.tick(logger, e.clock.Now()) {
			e.saveJournal(logger)
		}
		select {
		case <-signals:
			return
		case <-ticker.C():
		case <-e.wake:
		}
	}
}

// tick does everything due at now and answers whether the journal needs
// writing.
func (e *Emitter) tick(logger lager.Logger, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()

	if e.connected {
		// A router may have missed anything sent while we were away:
		// greet, re-register everything, re-send every pending
		// unregistration (counting as the repeats due by now).
		e.connected, e.online = false, true
		e.greetTries, e.greetNext = 0, now
		e.emitAllLocked(logger, now)
		for _, ts := range e.tombstones {
			e.publishLocked(logger, routetable.SubjectUnregister, ts.msgs)
			ts.catchUp(now)
		}
	}
	if !e.online {
		return e.journalDirty
	}
	for _, h := range e.hellos {
		e.helloLocked(logger, h, now)
	}
	e.hellos = nil

	if !e.greetNext.IsZero() && !now.Before(e.greetNext) {
		e.greetTries++
		if err := e.nc.PublishRequest(routetable.SubjectGreet, e.greetInbox, nil); err != nil {
			logger.Error("failed-to-greet", err)
		}
		e.greetNext = now.Add(greetRetryInterval)
		if e.greetTries >= greetMaxTries {
			logger.Info("greet-unanswered", lager.Data{"tries": e.greetTries, "interval": e.interval.String()})
			e.greetNext = time.Time{}
		}
	}
	if !e.promptEmit.IsZero() && !now.Before(e.promptEmit) {
		e.emitAllLocked(logger, now)
	}
	if !now.Before(e.nextEmit) {
		e.emitAllLocked(logger, now)
	}
	abandoned := e.abandonUnadoptedLocked(logger, now)
	return e.tombstonesDueLocked(logger, now) || abandoned || e.journalDirty
}

// helloLocked applies a router's announced interval. A router.start also
// schedules a prompt re-emission: the router has just (re)started with an
// empty table.
func (e *Emitter) helloLocked(logger lager.Logger, h routerHello, now time.Time) {
	logger.Info("router-hello", lager.Data{"router-id": h.ID, "start": h.start,
		"interval-seconds": h.MinimumRegisterIntervalInSeconds})
	if !h.start {
		e.greetNext = time.Time{}
	}
	if err := validRouterInterval(h); err != nil {
		logger.Info("router-hello-interval-refused", lager.Data{"router-id": h.ID, "reason": err.Error()})
	} else {
		e.interval = time.Duration(h.MinimumRegisterIntervalInSeconds) * time.Second
	}
	e.nextEmit = now.Add(e.jittered(e.interval))
	if h.start {
		e.promptEmit = now.Add(randDuration(time.Duration(float64(e.interval) * startJitterFraction)))
	}
}

// emitAllLocked re-sends every registration and schedules the next round.
// While NATS is down nothing is sent: the reconnect re-emits everything.
func (e *Emitter) emitAllLocked(logger lager.Logger, now time.Time) {
	e.promptEmit = time.Time{}
	e.nextEmit = now.Add(e.jittered(e.interval))
	if !e.sendableLocked() {
		return
	}
	for guid, msgs := range e.registered {
		if e.unsaved[guid] == 0 { // else its Register sends it once journaled
			e.publishLocked(logger, routetable.SubjectRegister, msgs)
		}
	}
}

// sendableLocked reports whether messages would reach the server now rather
// than sit in nats.go's reconnect buffer (the reconnect re-sends anyway).
func (e *Emitter) sendableLocked() bool {
	return e.nc != nil && e.nc.IsConnected()
}

// publishLocked hands msgs to nats.go's buffer; it does not wait.
func (e *Emitter) publishLocked(logger lager.Logger, subject string, msgs []routetable.RegistryMessage) {
	if e.nc == nil {
		return
	}
	for _, m := range msgs {
		data, err := json.Marshal(m)
		if err != nil {
			logger.Error("failed-to-encode", err)
			continue
		}
		if err := e.nc.Publish(subject, data); err != nil {
			logger.Error("failed-to-publish", err, lager.Data{"subject": subject, logKeyGUID: m.PrivateInstanceID})
		}
	}
}

// jittered answers d shortened by a random part of up to emitJitterFraction.
func (e *Emitter) jittered(d time.Duration) time.Duration {
	return d - randDuration(time.Duration(float64(d)*emitJitterFraction))
}

// randDuration answers a random duration in [0, max].
func randDuration(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(max) + 1))
}
