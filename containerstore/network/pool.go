package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
)

// poolIDPrefix starts every pooled namespace's CNI container ID
// ("pool.<n>") and so its netns name (<network>-pool.<n>). The '.' is not
// allowed in a guid (ValidateGUID): orphan scans, which look for
// containers, never take a pooled namespace for one.
const poolIDPrefix = "pool."

// poolRetry is how long the refill waits after a failed preparation.
const poolRetry = 5 * time.Second

// poolQuiet is how long after the last Setup ended the refill waits: the
// starts that Setup served are still creating and starting their
// containers, and CNI's processes would compete with them for the CPU
// (one at a time, a refill beside a start cost it ~8 ms of its own
// network set-up in cellbench start).
const poolQuiet = 500 * time.Millisecond

// poolBusyRecheck is how soon the refill looks again at CPUs it found busy.
// poolMaxDefer bounds how long busy CPUs hold a refill back: on a host
// that is never idle (its apps keep more than half the CPU time busy) the
// pool still gets a slot every 5 s, 24 in two minutes.
//
// The quiet time alone did not keep the refill out of a burst of starts:
// 20 at once claim the pool in their first milliseconds, their Setups end
// within ~0.6 s, and the refill then ran beside the second half of the
// burst, whose containers were still being created and started (cellbench
// start: the pool's CNI processes ran inside every measured round).
const (
	poolBusyRecheck = 250 * time.Millisecond
	poolMaxDefer    = 5 * time.Second
)

// poolSlot is one prepared namespace: made, given its veth and address by
// CNI ADD (under the slot's ID), with nothing of any container in it yet.
type poolSlot struct {
	ID   string `json:"id"`
	IPv4 net.IP `json:"ipv4,omitempty"`
	IPv6 net.IP `json:"ipv6,omitempty"`
	// MAC is the container interface's, pinned in the host's neighbour
	// table when a container claims the slot (neighbour.go).
	MAC string `json:"mac,omitempty"`
	// Ready is false while the slot is being prepared.
	Ready bool `json:"ready"`
	// NotBefore is when a slot given back at a delete may be claimed
	// (Config.ReturnDelay); zero for a prepared one.
	NotBefore time.Time `json:"not_before,omitzero"`
}

// claimable says whether a start may take the slot now.
func (s poolSlot) claimable(now time.Time) bool { return s.Ready && !now.Before(s.NotBefore) }

// poolFile is <data_dir>/network/pool.json.
type poolFile struct {
	// Next numbers the slots. An ID is not made again while anything
	// names it (this file, a container's state, a lease, a namespace:
	// recoverPool numbers past them all), so a stale entry never names a
	// newer slot. One whose every trace was removed may come again after
	// a crash (a namespace made at a miss and destroyed before the file
	// was next written), which nothing can tell.
	Next  uint64     `json:"next"`
	Slots []poolSlot `json:"slots"`
}

// pool is the Manager's set of prepared namespaces. Its file is written
// before anything is made on the host, so that after a crash recoverPool
// knows every slot. A claim writes nothing here: the claiming container's
// state, saved before the slot is touched, names the slot (PoolSlot), and
// recoverPool gives every slot a state names to that container. A start
// so costs no write of its own to the pool file.
type pool struct {
	size int
	path string
	wake chan struct{} // capacity 1: a claim or a finished Setup

	clock clock.Clock
	cpu   CPU

	// deferredSince is when the refill first found the CPUs busy since
	// it last prepared a slot (zero: not deferring). Only the refill's
	// goroutine uses it.
	deferredSince time.Time

	mu        sync.Mutex // guards the fields below and the file
	file      poolFile
	recovered bool      // no claim before recoverPool has sorted the file out
	inflight  int       // Setups running: the refill waits for none
	lastDone  time.Time // when the last Setup ended: the refill waits poolQuiet
}

func newPool(size int, path string, clk clock.Clock, cpu CPU) *pool {
	return &pool{size: size, path: path, clock: clk, cpu: cpu, wake: make(chan struct{}, 1)}
}

// yieldToBusyCPU answers whether the refill, which wants to prepare a slot,
// should wait poolBusyRecheck first because the CPUs are busy; after
// poolMaxDefer of waiting it prepares one anyway.
func (p *pool) yieldToBusyCPU(ctx context.Context) bool {
	if p.cpu == nil {
		return false
	}
	if !p.deferredSince.IsZero() && p.clock.Since(p.deferredSince) >= poolMaxDefer {
		return false
	}
	if !p.cpu.Busy(ctx) {
		return false
	}
	if p.deferredSince.IsZero() {
		p.deferredSince = p.clock.Now()
	}
	return true
}

func (p *pool) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pool) saveLocked() error {
	data, err := json.MarshalIndent(p.file, "", "  ")
	if err != nil {
		return fmt.Errorf("encode network pool: %w", err)
	}
	if err := writeFileAtomic(p.path, data, 0o600); err != nil {
		return fmt.Errorf("save network pool: %w", err)
	}
	return nil
}

func (p *pool) load() (poolFile, error) {
	var f poolFile
	data, err := os.ReadFile(p.path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("read network pool: %w", err)
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return f, fmt.Errorf("parse network pool %s: %w", p.path, err)
	}
	return f, nil
}

// started counts a Setup in flight; the returned function ends it.
func (p *pool) started() func() {
	p.mu.Lock()
	p.inflight++
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		p.inflight--
		p.lastDone = p.clock.Now()
		p.mu.Unlock()
		p.poke()
	}
}

// claim takes a ready slot out of the pool; ok is false when none is
// ready (the caller then makes a namespace itself). The file keeps the
// slot until its next write; until the caller's state names it, the slot
// is untouched and a restart finds it ready again.
func (p *pool) claim() (poolSlot, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.recovered {
		return poolSlot{}, false
	}
	now := p.clock.Now()
	i := slices.IndexFunc(p.file.Slots, func(s poolSlot) bool { return s.claimable(now) })
	if i < 0 {
		return poolSlot{}, false
	}
	slot := p.file.Slots[i]
	p.file.Slots = slices.Delete(p.file.Slots, i, i+1)
	return slot, true
}

// reserve answers a new slot ID for the namespace a Setup makes itself
// when no slot was ready, so that its Teardown can give it to the pool
// like a claimed one; "" with the pool off and before recovery (the IDs a
// crash left are not known yet). Nothing is written: the container's
// state, saved before anything is made, names the ID, and recoverPool
// numbers past every ID a state, a lease or a namespace holds.
func (p *pool) reserve() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.recovered || p.size == 0 {
		return ""
	}
	id := poolIDPrefix + strconv.FormatUint(p.file.Next, 10)
	p.file.Next++
	return id
}

// unclaim puts back a slot claimed but not used (its container's state
// could not be saved).
func (p *pool) unclaim(slot poolSlot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.file.Slots = append(p.file.Slots, slot)
}

// forget drops a slot from the pool (a failed preparation).
func (p *pool) forget(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.file.Slots = slices.DeleteFunc(p.file.Slots, func(s poolSlot) bool { return s.ID == id })
}

// wantsLocked says whether the refill should prepare another slot now,
// or else how long to wait before asking again (0: until woken).
func (p *pool) wantsLocked() (bool, time.Duration) {
	if !p.recovered || p.inflight > 0 || len(p.file.Slots) >= p.size {
		return false, 0
	}
	if wait := poolQuiet - p.clock.Since(p.lastDone); wait > 0 {
		return false, wait
	}
	return true, 0
}

// Stats answers the slots a start may claim now and the configured size.
func (p *pool) stats() (ready, size int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	for _, s := range p.file.Slots {
		if s.claimable(now) {
			ready++
		}
	}
	return ready, p.size
}

func (m *Manager) poolNetNS(id string) string { return m.cfg.NetworkName + "-" + id }

// PoolStats answers how many prepared namespaces are ready to be claimed,
// and the configured pool size.
func (m *Manager) PoolStats() (ready, size int) {
	if m.pool == nil {
		return 0, 0
	}
	return m.pool.stats()
}

// PoolRunner keeps the pool of prepared namespaces: it first sorts out what
// an earlier run left (recoverPool), then prepares one slot at a time
// whenever the pool is short, no Setup is running or ended just now, and
// the CPUs are not busy (or have been for poolMaxDefer), so that refilling
// does not compete with the starts it serves. Nil in host mode. On signal
// it leaves the pool as it is: the next run adopts it.
func (m *Manager) PoolRunner(logger lager.Logger) ifrit.Runner {
	if m.pool == nil {
		return nil
	}
	return ifrit.RunFunc(func(signals <-chan os.Signal, ready chan<- struct{}) error {
		logger := logger.Session("network.pool")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		close(ready)
		if err := m.recoverPool(ctx, logger); err != nil {
			logger.Error("failed-to-recover", err)
		}
		var retry, quiet <-chan time.Time
		for {
			if retry == nil {
				m.pool.mu.Lock()
				want, wait := m.pool.wantsLocked()
				m.pool.mu.Unlock()
				if !want {
					m.pool.deferredSince = time.Time{} // waiting on starts is not waiting on busy CPUs
				} else if m.pool.yieldToBusyCPU(ctx) {
					want, wait = false, poolBusyRecheck
				} else {
					// A Setup may have begun while the CPUs were measured.
					m.pool.mu.Lock()
					want, wait = m.pool.wantsLocked()
					m.pool.mu.Unlock()
				}
				if want {
					m.pool.deferredSince = time.Time{}
					if err := m.prepareSlot(ctx, logger); err != nil {
						logger.Error("failed-to-prepare", err)
						retry = m.cfg.Clock.NewTimer(poolRetry).C()
					}
					select {
					case <-signals:
						return nil
					default:
					}
					continue
				}
				if wait > 0 && quiet == nil {
					quiet = m.cfg.Clock.NewTimer(wait).C()
				}
			}
			select {
			case <-signals:
				return nil
			case <-m.pool.wake:
			case <-retry:
				retry = nil
			case <-quiet:
				quiet = nil
			}
		}
	})
}

// prepareSlot makes one namespace with its veth and address and adds it to
// the pool as ready; on failure it undoes what it made.
func (m *Manager) prepareSlot(ctx context.Context, logger lager.Logger) (retErr error) {
	p := m.pool
	p.mu.Lock()
	if len(p.file.Slots) >= p.size {
		p.mu.Unlock() // a slot given back meanwhile filled it
		return nil
	}
	slot := poolSlot{ID: poolIDPrefix + strconv.FormatUint(p.file.Next, 10)}
	p.file.Next++
	p.file.Slots = append(p.file.Slots, slot)
	err := p.saveLocked()
	p.mu.Unlock()
	if err != nil {
		p.forget(slot.ID)
		return err
	}
	defer func() {
		if retErr != nil {
			if err := m.destroySlot(context.WithoutCancel(ctx), slot.ID); err != nil {
				logger.Error("failed-to-destroy", err, lager.Data{"slot": slot.ID})
				return // stays in the file, not ready: the next recovery retries
			}
			p.forget(slot.ID)
		}
	}()
	path, err := m.namespaces.Create(ctx, m.poolNetNS(slot.ID))
	if err != nil {
		return err
	}
	res, err := m.cni.Setup(ctx, slot.ID, path)
	if err != nil {
		return fmt.Errorf("cni add %s: %w", slot.ID, err)
	}
	if slot.IPv4, slot.IPv6, err = addressesOf(res); err != nil {
		return err
	}
	slot.MAC = macOf(res)
	slot.Ready = true
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.IndexFunc(p.file.Slots, func(s poolSlot) bool { return s.ID == slot.ID }); i >= 0 {
		p.file.Slots[i] = slot
	}
	if err := p.saveLocked(); err != nil {
		return err
	}
	logger.Debug("prepared", lager.Data{"slot": slot.ID, "ipv4": slot.IPv4.String()})
	return nil
}

// destroySlot removes a pooled namespace and frees its address; what is
// already gone is not an error.
func (m *Manager) destroySlot(ctx context.Context, id string) error {
	name := m.poolNetNS(id)
	path, ok := m.namespaces.Path(name)
	if !ok {
		path = "" // the plugins then skip the netns and still free IPAM
	}
	var errs []error
	if err := m.cni.Remove(ctx, id, path); err != nil {
		errs = append(errs, fmt.Errorf("cni del %s: %w", id, err))
	}
	if err := m.namespaces.Delete(ctx, name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// recoverPool adopts the slots an earlier run prepared and destroys the
// rest: a slot half prepared, one whose namespace is gone, those beyond
// the configured size, and pooled namespaces or addresses neither the file
// nor a container's state knows (a lost file). A slot a container's state
// names is that container's (its claim was saved; the pool file had not
// been written since) and leaves the pool. Until this is done no start
// claims anything.
func (m *Manager) recoverPool(ctx context.Context, logger lager.Logger) error {
	p := m.pool
	f, loadErr := p.load()
	var errs []error
	if loadErr != nil {
		errs = append(errs, loadErr) // start empty; the sweep below finds what it named
	}
	var kept []poolSlot
	destroy := func(id, reason string) {
		if err := m.destroySlot(ctx, id); err != nil {
			errs = append(errs, err)
			return
		}
		logger.Info("destroyed", lager.Data{"slot": id, "reason": reason})
	}
	owned, err := m.pooledByStates()
	if err != nil {
		// Without the states a slot may be a container's: adopt none.
		errs = append(errs, err)
		p.mu.Lock()
		p.recovered = false
		p.mu.Unlock()
		return errors.Join(errs...)
	}
	known := map[string]bool{}
	for _, s := range f.Slots {
		known[s.ID] = true
		switch {
		case owned[s.ID]:
			// the container's now
		case !s.Ready:
			destroy(s.ID, "half-prepared")
		case len(kept) >= p.size:
			destroy(s.ID, "beyond-pool-size")
		default:
			if _, ok := m.namespaces.Path(m.poolNetNS(s.ID)); !ok {
				destroy(s.ID, "netns-gone")
				continue
			}
			kept = append(kept, s)
		}
	}
	// Pooled namespaces and leases the file does not know. A container
	// that claimed one is named by its state, whose Teardown frees it.
	stray := map[string]bool{}
	if names, err := m.namespaces.List(); err == nil {
		for _, name := range names {
			if id, ok := strings.CutPrefix(name, m.cfg.NetworkName+"-"); ok && strings.HasPrefix(id, poolIDPrefix) {
				stray[id] = true
			}
		}
	} else {
		errs = append(errs, err)
	}
	if leases, err := ipamLeases(m.ipamDir); err == nil {
		for id := range leases {
			if strings.HasPrefix(id, poolIDPrefix) {
				stray[id] = true
			}
		}
	} else {
		errs = append(errs, err)
	}
	next := f.Next
	for _, ids := range []map[string]bool{stray, owned} {
		for id := range ids {
			// Neither a lost file nor an ID reserved after the file's
			// last write (reserve) may make IDs that exist again.
			if n, err := strconv.ParseUint(strings.TrimPrefix(id, poolIDPrefix), 10, 64); err == nil && n >= next {
				next = n + 1
			}
		}
	}
	for id := range known {
		delete(stray, id)
	}
	for id := range stray {
		if !owned[id] {
			destroy(id, "unknown-to-pool-file")
		}
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	p.file.Next = max(p.file.Next, next)
	p.file.Slots = kept
	p.recovered = true
	if err := p.saveLocked(); err != nil {
		errs = append(errs, err)
	}
	logger.Info("recovered", lager.Data{"ready": len(kept), "size": p.size})
	p.poke()
	return errors.Join(errs...)
}

// pooledByStates answers the pool slots that container states name. A
// state that cannot be read is an error: it may name a slot.
func (m *Manager) pooledByStates() (map[string]bool, error) {
	owned := map[string]bool{}
	guids, err := m.states.guids()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, g := range guids {
		st, ok, err := m.states.load(g)
		if err != nil {
			errs = append(errs, err)
		} else if ok && st.PoolSlot != "" {
			owned[st.PoolSlot] = true
		}
	}
	return owned, errors.Join(errs...)
}
