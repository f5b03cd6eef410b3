package routeemitter

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/routeemitter/routetable"
)

// tombstoneSchedule: an unregistration is sent at once and repeated at these
// offsets, because a lost unregister leaves a TLS endpoint in Gorouter for
// ever (routing-release#285).
var tombstoneSchedule = []time.Duration{0, 5 * time.Second, 15 * time.Second, 30 * time.Second, 60 * time.Second}

// tombstone is an unregistration being repeated.
type tombstone struct {
	msgs  []routetable.RegistryMessage
	start time.Time
	sent  int // sends done; the next is due at start + tombstoneSchedule[sent]
}

func (t *tombstone) due() time.Time { return t.start.Add(tombstoneSchedule[t.sent]) }

// catchUp counts one send at now as every repeat due by now: after a long
// pause one message stands for all the missed ones.
func (t *tombstone) catchUp(now time.Time) {
	for t.sent < len(tombstoneSchedule) && !now.Before(t.due()) {
		t.sent++
	}
}

func (t *tombstone) done() bool { return t.sent >= len(tombstoneSchedule) }

// RouteRegistrar is what a container lifecycle needs of the emitter.
//
//go:generate go tool counterfeiter -o routeemitterfakes/fake_route_registrar.go . RouteRegistrar
type RouteRegistrar interface {
	Register(logger lager.Logger, ep Endpoint) error
	Unregister(logger lager.Logger, guid string) error
}

var _ RouteRegistrar = (*Emitter)(nil)

// Register makes ep's routes registered: they are sent at once (when
// connected), re-sent every interval and journaled. Routes ep no longer has
// are unregistered; pending unregister repeats of routes it has again are
// cancelled. Calling it again with the same routes is cheap. Errors wrap
// ErrInvalidRoute.
func (e *Emitter) Register(logger lager.Logger, ep Endpoint) error {
	logger = logger.Session("routeemitter.register", lager.Data{logKeyGUID: ep.GUID})
	if ep.GUID == "" {
		return fmt.Errorf("%w: instance guid is required", ErrInvalidRoute)
	}
	ports := make([]uint16, 0, len(ep.Mappings))
	for _, m := range ep.Mappings {
		ports = append(ports, m.ContainerPort)
	}
	if err := ValidateRoutes(ep.Routes, ports); err != nil {
		return fmt.Errorf("register %s: %w", ep.GUID, err)
	}
	now := e.clock.Now()
	msgs := BuildMessages(ep, e.cfg.Zone, e.cfg.InstanceAddress, now)

	// route-emitter sets endpoint_updated_at_ns only when an endpoint is
	// added (routingtable.go messages: emitEndpointUpdatedAt); what is kept
	// for re-emission and later changes carries 0.
	stamped := msgs
	msgs = make([]routetable.RegistryMessage, len(stamped))
	for i, m := range stamped {
		m.EndpointUpdatedAtNs = 0
		msgs[i] = m
	}

	e.mu.Lock()
	prev, ok := e.registered[ep.GUID]
	_, adopted := e.journaled[ep.GUID]
	if !ok {
		prev = e.journaled[ep.GUID]
	}
	added := !ok && !adopted
	delete(e.journaled, ep.GUID)
	changed := !sameRegistrations(prev, msgs)
	if !changed {
		msgs = prev
	}
	if len(msgs) > 0 {
		e.registered[ep.GUID] = msgs
	} else {
		delete(e.registered, ep.GUID)
	}
	// Pending repeated unregisters of any instance (this one, or a gone one
	// whose host ports this instance reuses) must not remove what is now
	// registered at the same address and URI.
	for guid, ts := range e.tombstones {
		rest := subtractRoutes(ts.msgs, msgs)
		if uriCount(rest) == uriCount(ts.msgs) && guid != ep.GUID {
			continue
		}
		ts.msgs = rest
		if len(ts.msgs) == 0 {
			delete(e.tombstones, guid)
		}
		changed = true
	}
	if removed := subtractRoutes(prev, msgs); len(removed) > 0 {
		e.addTombstoneLocked(ep.GUID, removed, now)
		if e.sendableLocked() {
			e.publishLocked(logger, routetable.SubjectUnregister, removed)
			e.tombstones[ep.GUID].sent = 1
		}
	}
	send := func() {
		if e.sendableLocked() {
			if added {
				e.publishLocked(logger, routetable.SubjectRegister, stamped)
			} else {
				e.publishLocked(logger, routetable.SubjectRegister, msgs)
			}
		}
	}
	if !changed {
		if e.unsaved[ep.GUID] == 0 { // else the Register that changed it sends it once journaled
			send()
		}
		e.mu.Unlock()
		return nil
	}
	// Journaled before it is sent: a router must never hold a route that
	// an agent killed right after sending it would not know of at its
	// restart, and so never unregister (Gorouter never prunes a TLS
	// route). integration/routes found it: a kill -9 6 ms after the
	// register went out, the journal then empty. A journal write that
	// fails (logged, retried by the loop) does not hold the route back:
	// routing the instance matters more than the next restart's cleanup.
	e.unsaved[ep.GUID]++
	e.mu.Unlock()

	logger.Info("registered", lager.Data{"messages": len(msgs)})
	e.saveJournal(logger)

	e.mu.Lock()
	if e.unsaved[ep.GUID]--; e.unsaved[ep.GUID] <= 0 {
		delete(e.unsaved, ep.GUID)
	}
	if cur, ok := e.registered[ep.GUID]; ok && sameRegistrations(cur, msgs) {
		send()
	}
	e.mu.Unlock()
	e.poke()
	return nil
}

// Unregister sends router.unregister for every route of guid and returns
// once the NATS server has confirmed it (flush), so the caller may stop the
// app afterwards. The unregistration is repeated at +5s, +15s, +30s and +60s
// unless guid registers again. Unknown guids are a no-op. When the server
// cannot confirm, the error wraps ErrNotConnected and the message goes out on
// reconnect.
func (e *Emitter) Unregister(logger lager.Logger, guid string) error {
	logger = logger.Session("routeemitter.unregister", lager.Data{logKeyGUID: guid})
	now := e.clock.Now()

	e.mu.Lock()
	msgs, ok := e.registered[guid]
	if !ok {
		msgs, ok = e.journaled[guid]
	}
	if !ok {
		e.mu.Unlock()
		return nil
	}
	delete(e.registered, guid)
	delete(e.journaled, guid)
	e.addTombstoneLocked(guid, msgs, now)
	nc := e.nc
	sent := e.sendableLocked()
	if sent {
		e.publishLocked(logger, routetable.SubjectUnregister, msgs)
		e.tombstones[guid].sent = 1
	}
	e.mu.Unlock()

	logger.Info("unregistered", lager.Data{"messages": len(msgs)})
	e.saveJournal(logger)
	e.poke()

	if !sent {
		return fmt.Errorf("unregister %s: %w", guid, ErrNotConnected)
	}
	if err := nc.FlushTimeout(e.cfg.FlushTimeout); err != nil {
		return fmt.Errorf("unregister %s: flush: %w: %w", guid, ErrNotConnected, err)
	}
	return nil
}

// Recover settles the routes found in the journal after an agent restart:
// those of guids keep rejects (containers that are gone) are unregistered
// and repeated like any unregistration; the others stay journaled (not
// emitted) until the agent calls Register (re-registered) or Unregister for
// them. Those still unclaimed after Config.AdoptionGrace are unregistered:
// a forgotten TLS route would stay in Gorouter for ever. keep is called
// without locks held.
func (e *Emitter) Recover(logger lager.Logger, keep func(guid string) bool) error {
	logger = logger.Session("routeemitter.recover")
	e.mu.Lock()
	guids := slices.Sorted(maps.Keys(e.journaled))
	e.mu.Unlock()

	var gone []string
	for _, guid := range guids {
		if !keep(guid) {
			gone = append(gone, guid)
		}
	}
	now := e.clock.Now()
	e.mu.Lock()
	e.adoptBy = now.Add(e.cfg.AdoptionGrace)
	for _, guid := range gone {
		if msgs, ok := e.journaled[guid]; ok {
			delete(e.journaled, guid)
			e.addTombstoneLocked(guid, msgs, now)
		}
	}
	e.mu.Unlock()

	logger.Info("recovered", lager.Data{"journaled": len(guids), "unregistering": gone})
	if len(gone) > 0 {
		e.saveJournal(logger)
		e.poke()
	}
	return nil
}

// Registered answers the registrations currently re-emitted for guid.
func (e *Emitter) Registered(guid string) []routetable.RegistryMessage {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.registered[guid])
}

// abandonUnadoptedLocked unregisters the journaled routes nobody claimed
// within the adoption grace, and answers whether it did.
func (e *Emitter) abandonUnadoptedLocked(logger lager.Logger, now time.Time) bool {
	if e.adoptBy.IsZero() || now.Before(e.adoptBy) {
		return false
	}
	e.adoptBy = time.Time{}
	for guid, msgs := range e.journaled {
		logger.Info("unregistering-unclaimed-routes", lager.Data{logKeyGUID: guid})
		e.addTombstoneLocked(guid, msgs, now)
	}
	abandoned := len(e.journaled) > 0
	clear(e.journaled)
	return abandoned
}

// addTombstoneLocked starts (or restarts) the unregister schedule of guid
// with msgs added; the first send is due at once.
func (e *Emitter) addTombstoneLocked(guid string, msgs []routetable.RegistryMessage, now time.Time) {
	ts := e.tombstones[guid]
	if ts == nil {
		ts = &tombstone{}
		e.tombstones[guid] = ts
	}
	ts.msgs = append(subtractRoutes(ts.msgs, msgs), msgs...)
	ts.start, ts.sent = now, 0
}

// tombstonesDueLocked sends the unregistrations due at now and answers
// whether any tombstone finished (the journal must be written).
func (e *Emitter) tombstonesDueLocked(logger lager.Logger, now time.Time) bool {
	finished := false
	for guid, ts := range e.tombstones {
		if !ts.done() {
			if now.Before(ts.due()) {
				continue
			}
			e.publishLocked(logger, routetable.SubjectUnregister, ts.msgs)
			ts.catchUp(now)
		}
		if ts.done() {
			delete(e.tombstones, guid)
			finished = true
			logger.Info("unregister-repeats-done", lager.Data{logKeyGUID: guid})
		}
	}
	return finished
}

// saveJournal writes the current routes and tombstones, or returns at once
// when a write whose snapshot was taken after the caller's turn was
// counted has landed (a group commit). A failure is logged and retried by
// the loop: routes stay registered either way, the journal only matters
// for the next restart.
//
// Every caller changed what the journal holds before calling, so any
// snapshot taken after its turn is counted (journalGen) holds its change.
// Starts in flight at once queue here behind one write of the whole
// journal (all routes, fsynced with its directory); the first of them to
// get the lock writes for every one counted before its snapshot, which
// then find their turn covered (a change counted just after a snapshot is
// written once more, which is harmless): at 10 starts in flight and 500
// routes, one write served several registrations, where each wrote the
// same growing file.
func (e *Emitter) saveJournal(logger lager.Logger) {
	e.mu.Lock()
	e.journalGen++
	turn := e.journalGen
	e.mu.Unlock()

	e.journalMu.Lock()
	defer e.journalMu.Unlock()
	e.mu.Lock()
	if e.journalSaved >= turn {
		e.mu.Unlock()
		return
	}
	st := journalState{
		Registered: make(map[string][]routetable.RegistryMessage, len(e.registered)+len(e.journaled)),
		Tombstones: make(map[string][]routetable.RegistryMessage, len(e.tombstones)),
	}
	maps.Copy(st.Registered, e.journaled)
	maps.Copy(st.Registered, e.registered)
	for guid, ts := range e.tombstones {
		st.Tombstones[guid] = ts.msgs
	}
	taken := e.journalGen
	e.journalDirty = false
	e.mu.Unlock()

	e.journalWrites++
	if err := e.journal.save(st); err != nil {
		logger.Error("failed-to-write-route-journal", err)
		e.mu.Lock()
		e.journalDirty = true
		e.mu.Unlock()
		return
	}
	e.mu.Lock()
	e.journalSaved = max(e.journalSaved, taken)
	e.mu.Unlock()
}

func uriCount(msgs []routetable.RegistryMessage) int {
	n := 0
	for _, m := range msgs {
		n += len(m.URIs)
	}
	return n
}
