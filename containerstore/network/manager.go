package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"

	"code.cloudfoundry.org/lager/v3"
	gocni "github.com/containerd/go-cni"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/executor/netrules"
)

const logKeyGUID = "container-guid"

var (
	// ErrNotFound is wrapped when a container has no (complete) network.
	ErrNotFound = errors.New("container network not found")
	// ErrExists is wrapped when Setup is called for a container that has a network.
	ErrExists = errors.New("container network already exists")
)

// PortMapping maps a host port (on the external IP and on loopback) to a
// container port.
type PortMapping struct {
	ContainerPort uint16 `json:"container_port"`
	HostPort      uint16 `json:"host_port"`
}

// Result is a container's network as the runtime, the credentials and the
// readiness checks need it.
type Result struct {
	// NetNSPath goes into the OCI spec's network namespace; empty in host mode.
	NetNSPath string
	// IPv4 is the container's address, dialled by readiness checks
	// (127.0.0.1 in host mode); IPv6 is set when the subnet gives one.
	IPv4, IPv6 net.IP
	// ExternalIP is the cell's address that routes point at.
	ExternalIP net.IP
	// Ports are in the order of the requested container ports.
	Ports []PortMapping
}

// Deps are the Manager's collaborators; nil ones get the real thing.
type Deps struct {
	Namespaces Namespaces
	CNI        CNI
	HostPorts  HostPorts
	Neighbours Neighbours
	// CPU holds the pool's refill back while the host is busy; nil means
	// ProcStatCPU.
	CPU CPU
	// Scrubber and Conntrack let a deleted container's pooled namespace
	// go back to the pool (reuse.go); nil means NetNSScrubber and
	// NetlinkConntrack.
	Scrubber  Scrubber
	Conntrack Conntrack
}

// Manager sets up and tears down the containers' networks.
type Manager struct {
	cfg        Config
	externalIP net.IP
	ipamDir    string // host-local's files for our network
	states     stateStore
	ports      *PortAllocator
	namespaces Namespaces
	cni        CNI
	hostPorts  HostPorts
	neighbours Neighbours
	scrubber   Scrubber
	conntrack  Conntrack
	locks      keyedMutex
	// held is the table as the first Restore read it.
	held heldTable
	// pool holds namespaces prepared ahead (pool.go); nil in host mode.
	pool *pool
	// defaultEgress is cfg.DefaultEgress in canonical form.
	defaultEgress []executor.EgressRule
}

// New makes a Manager with the real iproute2, go-cni and nftables.
func New(logger lager.Logger, cfg Config) (*Manager, error) {
	return NewWithDeps(logger, cfg, Deps{})
}

// NewWithDeps makes a Manager; empty config fields get DefaultConfig's
// values (except PortQuarantine, where 0 means no quarantine), an empty
// ExternalIP gets DefaultExternalIP().
func NewWithDeps(logger lager.Logger, cfg Config, deps Deps) (*Manager, error) {
	logger = logger.Session("network.new")
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("network config: %w", err)
	}
	root := filepath.Join(cfg.DataDir, "network")
	m := &Manager{
		cfg:        cfg,
		ipamDir:    filepath.Join(root, "ipam", cfg.NetworkName),
		states:     stateStore{dir: filepath.Join(root, "containers")},
		namespaces: deps.Namespaces,
		cni:        deps.CNI,
		hostPorts:  deps.HostPorts,
		neighbours: deps.Neighbours,
		scrubber:   deps.Scrubber,
		conntrack:  deps.Conntrack,
	}
	m.defaultEgress, _ = netrules.ValidateEgressRules("network.egress.default", cfg.DefaultEgress) // valid: checked above
	if cfg.ExternalIP != "" {
		m.externalIP = net.ParseIP(cfg.ExternalIP)
	} else {
		m.externalIP = DefaultExternalIP()
	}
	if ip4 := m.externalIP.To4(); ip4 != nil {
		m.externalIP = ip4
	}

	pcfg := PortAllocatorConfig{Quarantine: cfg.PortQuarantine, Clock: cfg.Clock, Path: filepath.Join(root, "ports.json")}
	if cfg.Mode == ModeHost {
		// The app picks its port; the allocator only detects conflicts.
		pcfg.First, pcfg.Last, pcfg.Quarantine = 1, 65535, 0
	} else {
		pcfg.First, pcfg.Last, _ = ParsePortRange(cfg.HostPortRange)
	}
	ports, err := NewPortAllocator(pcfg)
	if err != nil {
		return nil, err
	}
	m.ports = ports

	if cfg.Mode == ModeBridge {
		if m.namespaces == nil {
			m.namespaces = &IPNetNS{}
		}
		if m.neighbours == nil {
			m.neighbours = NetlinkNeighbours{}
		}
		if m.scrubber == nil {
			m.scrubber = NetNSScrubber{}
		}
		if m.conntrack == nil {
			m.conntrack = NetlinkConntrack{}
		}
		if m.hostPorts == nil {
			m.hostPorts = NFTables{Network: cfg.NetworkName, Subnet: cfg.Subnet, Bridge: cfg.BridgeName}
		}
		if err := m.hostPorts.Init(context.Background()); err != nil {
			return nil, err
		}
		cpu := deps.CPU
		if cpu == nil {
			cpu = ProcStatCPU{}
		}
		m.pool = newPool(cfg.PoolSize, filepath.Join(root, "pool.json"), cfg.Clock, cpu)
		if m.cni == nil && cfg.Plumbing == PlumbingCNI {
			conf, err := ConfList(cfg, filepath.Join(root, "ipam"))
			if err != nil {
				return nil, err
			}
			if m.cni, err = NewGoCNI(cfg.PluginDirs, conf); err != nil {
				return nil, err
			}
		}
		if m.cni == nil {
			if m.cni, err = NewPlumber(cfg, m.ipamDir); err != nil {
				return nil, err
			}
		}
	}
	logger.Info("ready", lager.Data{"mode": cfg.Mode, "external-ip": m.externalIP.String(),
		"subnet": cfg.Subnet, "plumbing": cfg.Plumbing, "pool-size": cfg.PoolSize, "host-port-range": cfg.HostPortRange, "port-quarantine": cfg.PortQuarantine.String()})
	return m, nil
}

// ExternalIP is the address routes point at.
func (m *Manager) ExternalIP() net.IP { return m.externalIP }

// PortAllocator exposes the allocator, e.g. for metrics.
func (m *Manager) PortAllocator() *PortAllocator { return m.ports }

// NetNSName is the name of guid's namespace in `ip netns list`.
func (m *Manager) NetNSName(guid string) string { return m.cfg.NetworkName + "-" + guid }

// Setup gives guid its network and maps a host port to each container port;
// the container gets the default egress rules only. On error it undoes
// everything it made.
func (m *Manager) Setup(ctx context.Context, logger lager.Logger, guid string, containerPorts []uint16) (_ Result, retErr error) {
	return m.SetupFiltered(ctx, logger, guid, containerPorts, FilterSpec{})
}

// SetupFiltered is Setup with the container's own egress rules, policies
// and log guid (spec.Egress comes after the cell's default rules). The
// filter is in place before Setup returns, so before the container's first
// process starts.
func (m *Manager) SetupFiltered(ctx context.Context, logger lager.Logger, guid string, containerPorts []uint16, spec FilterSpec) (_ Result, retErr error) {
	logger = logger.Session("network.setup", lager.Data{logKeyGUID: guid})
	if err := ValidateGUID(guid); err != nil {
		return Result{}, err
	}
	if err := validateContainerPorts(containerPorts); err != nil {
		return Result{}, fmt.Errorf("set up network of %s: %w", guid, err)
	}
	spec, err := canonicalSpec(spec)
	if err != nil {
		return Result{}, fmt.Errorf("set up network of %s: %w", guid, err)
	}
	defer m.locks.lock(guid)()

	if _, ok, err := m.states.load(guid); err != nil {
		return Result{}, err
	} else if ok {
		return Result{}, fmt.Errorf("%w: %s", ErrExists, guid)
	}
	if m.cfg.Mode == ModeHost {
		return m.setupHost(logger, guid, containerPorts)
	}

	if m.pool != nil {
		defer m.pool.started()() // the refill waits for running Setups
	}
	// Rollback runs even when ctx was cancelled.
	cleanupCtx := context.WithoutCancel(ctx)
	hostPorts, err := m.ports.Allocate(guid, len(containerPorts))
	if err != nil {
		return Result{}, fmt.Errorf("set up network of %s: %w", guid, err)
	}
	// rollbackFailed keeps the state file and the ports when undoing
	// CNI or the forwards failed: Teardown or CleanupOrphans finish it.
	rollbackFailed := false
	defer func() {
		if retErr != nil && !rollbackFailed {
			if err := m.ports.Forget(guid); err != nil {
				logger.Error("failed-to-forget-ports", err)
			}
		}
	}()

	st := containerState{GUID: guid, Mode: ModeBridge, NetNSName: m.NetNSName(guid), ExternalIP: m.externalIP,
		DefaultEgress: m.defaultEgress, Filter: &spec}
	for i, cp := range containerPorts {
		st.Ports = append(st.Ports, PortMapping{ContainerPort: cp, HostPort: hostPorts[i]})
	}
	slot, pooled := m.claimSlot()
	if pooled {
		st.PoolSlot = slot.ID
	} else if m.pool != nil {
		// Made here under a slot ID of its own, so that its Teardown
		// can give it to the pool as it would a claimed one: a burst
		// right after the agent started (the pool not full yet) would
		// otherwise destroy each such namespace and miss again.
		st.PoolSlot = m.pool.reserve()
	}
	if err := m.states.save(st); err != nil {
		if pooled {
			m.pool.unclaim(slot) // untouched
		}
		return Result{}, err
	}
	defer func() {
		if retErr != nil && !rollbackFailed {
			if err := m.states.remove(guid); err != nil {
				logger.Error("failed-to-remove-state", err)
			}
		}
	}()
	defer func() {
		if retErr != nil {
			m.deleteNetNS(cleanupCtx, logger, st)
		}
	}()

	var path, mac string
	if pooled {
		// Prepared ahead: veth, address and IPv6 off are there; what is
		// this instance's (name, host ports, filter) comes now.
		path, retErr = m.namespaces.Rename(ctx, m.poolNetNS(slot.ID), st.NetNSName)
		st.IPv4, st.IPv6, mac = slot.IPv4, slot.IPv6, slot.MAC
	} else {
		if path, err = m.namespaces.Create(ctx, st.NetNSName); err != nil {
			return Result{}, err
		}
		res, err := m.cni.Setup(ctx, st.cniID(), path)
		if err != nil {
			retErr = fmt.Errorf("cni add %s: %w", guid, err)
		}
		if retErr == nil {
			st.IPv4, st.IPv6, retErr = addressesOf(res)
			mac = macOf(res)
		}
	}
	st.NetNSPath = path
	if retErr == nil {
		retErr = m.hostPorts.Map(ctx, guid, st.IPv4, st.Ports)
	}
	if retErr == nil {
		retErr = m.hostPorts.Filter(ctx, guid, st.IPv4, st.effectiveFilter())
	}
	if retErr == nil {
		st.MAC = m.pinNeighbour(logger, mac, st.IPv4)
		st.Complete = true
		retErr = m.states.save(st)
	}
	if retErr != nil {
		// CNI ADD may have got half way; the host ports may be mapped.
		m.unpinNeighbour(logger, st)
		if err := m.remove(cleanupCtx, st, path, nil); err != nil {
			logger.Error("failed-to-roll-back", err)
			rollbackFailed = true
		}
		return Result{}, retErr
	}
	logger.Info("set-up", lager.Data{"ipv4": st.IPv4.String(), "ports": st.Ports, "netns": path, "pool-slot": st.PoolSlot, "from-pool": pooled})
	return st.result(), nil
}

// claimSlot takes a prepared namespace when the pool has one.
func (m *Manager) claimSlot() (poolSlot, bool) {
	if m.pool == nil {
		return poolSlot{}, false
	}
	return m.pool.claim()
}

// deleteNetNS removes st's namespace under each name it may have: its own
// and, for a claimed pool slot not yet renamed, the slot's.
func (m *Manager) deleteNetNS(ctx context.Context, logger lager.Logger, st containerState) []error {
	names := []string{st.NetNSName}
	if st.PoolSlot != "" {
		names = append(names, m.poolNetNS(st.PoolSlot))
	}
	var errs []error
	for _, name := range names {
		if err := m.namespaces.Delete(ctx, name); err != nil {
			logger.Error("failed-to-delete-netns", err)
			errs = append(errs, err)
		}
	}
	return errs
}

func (m *Manager) setupHost(logger lager.Logger, guid string, containerPorts []uint16) (_ Result, retErr error) {
	if err := m.ports.MarkInUse(guid, containerPorts); err != nil {
		return Result{}, fmt.Errorf("set up host network of %s: %w", guid, err)
	}
	defer func() {
		if retErr != nil {
			if err := m.ports.Forget(guid); err != nil {
				logger.Error("failed-to-forget-ports", err)
			}
		}
	}()
	st := containerState{GUID: guid, Mode: ModeHost, IPv4: net.IPv4(127, 0, 0, 1).To4(), ExternalIP: m.externalIP, Complete: true}
	for _, p := range containerPorts {
		st.Ports = append(st.Ports, PortMapping{ContainerPort: p, HostPort: p})
	}
	if err := m.states.save(st); err != nil {
		return Result{}, err
	}
	logger.Info("set-up", lager.Data{"mode": ModeHost, "ports": st.Ports})
	return st.result(), nil
}

// Teardown removes guid's network: the host port forwards, CNI DEL (veth,
// IP lease), the namespace; then the host ports go into quarantine and the
// state file goes. When a step fails the state file stays so that another
// call can finish; a call for a guid that has no network is a no-op.
func (m *Manager) Teardown(ctx context.Context, logger lager.Logger, guid string) error {
	return m.teardown(ctx, logger, guid, false)
}

// TeardownStopped is Teardown for a container whose processes are all
// gone (its runtime deleted it): instead of CNI DEL and deleting the
// namespace it may give a pooled namespace back to the pool (returnSlot).
func (m *Manager) TeardownStopped(ctx context.Context, logger lager.Logger, guid string) error {
	return m.teardown(ctx, logger, guid, true)
}

func (m *Manager) teardown(ctx context.Context, logger lager.Logger, guid string, stopped bool) error {
	logger = logger.Session("network.teardown", lager.Data{logKeyGUID: guid})
	if err := ValidateGUID(guid); err != nil {
		return err
	}
	defer m.locks.lock(guid)()
	leases, err := ipamLeases(m.ipamDir)
	if err != nil {
		logger.Error("failed-to-read-ipam-leases", err)
	}
	var mapped []uint16 // nil: no forward known beyond the state's
	if _, found, _ := m.states.load(guid); !found && m.hostPorts != nil {
		// No state to say which ports: ask the table (rare, and one
		// listing). Without an answer, releasing the ports could hand
		// out ports whose forwards still exist.
		all, err := m.hostPorts.Mapped(ctx)
		if err != nil {
			return fmt.Errorf("tear down network of %s: %w", guid, err)
		}
		mapped = forwardsOf(all, guid)
	}
	return m.teardownLocked(ctx, logger, guid, leases[guid], mapped, stopped)
}

// teardownLocked removes what is left of guid's network; leased are the
// addresses host-local still holds for it, mapped the host ports forwarded
// to it that its state may not know of; stopped says its processes are all
// gone (a pooled namespace may go back to the pool).
func (m *Manager) teardownLocked(ctx context.Context, logger lager.Logger, guid string, leased []net.IP, mapped []uint16, stopped bool) error {
	st, found, err := m.states.load(guid)
	if err != nil {
		// Unreadable state: still remove what the names lead to.
		logger.Error("failed-to-load-state", err)
	}
	if !found {
		st = containerState{GUID: guid, Mode: m.cfg.Mode, NetNSName: m.NetNSName(guid)}
	}
	var (
		returned poolSlot // the pooled namespace given back (reuse.go)
		ok       bool
	)

	if st.Mode == ModeBridge && m.cni != nil {
		_, nsExists := m.namespaces.Path(st.NetNSName)
		if !found && !nsExists && len(leased) == 0 && mapped == nil {
			// Nothing on the host; at most stray ports in the allocator.
			_, err := m.ports.Release(guid)
			return err
		}
		var errs []error
		path, _ := m.namespaces.Path(st.NetNSName)
		if !nsExists {
			path = "" // the plugins then skip the netns and still free IPAM
		}
		if stopped && found && nsExists {
			returned, ok = m.returnSlot(ctx, logger, st, path)
		}
		if !ok {
			m.unpinNeighbour(logger, st)
			if err := m.remove(ctx, st, path, mapped); err != nil {
				errs = append(errs, err)
			}
			errs = append(errs, m.deleteNetNS(ctx, logger, st)...)
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("tear down network of %s: %w", guid, err)
		}
	}

	released, err := m.ports.Release(guid)
	if err == nil {
		err = m.states.remove(guid)
	}
	if err != nil {
		if ok {
			// The state still names the slot: a later Teardown destroys
			// it under either name (deleteNetNS), so it must not be
			// claimed meanwhile.
			m.pool.forget(returned.ID)
		}
		return fmt.Errorf("tear down network of %s: %w", guid, err)
	}
	if ok {
		if err := m.pool.ready(returned.ID); err != nil {
			logger.Error("failed-to-save-pool", err)
		}
	}
	logger.Info("torn-down", lager.Data{"netns-name": st.NetNSName, "quarantined-ports": released, "had-state": found, "returned-to-pool": returned.ID})
	return nil
}

// forwardsOf answers guid's forwarded host ports from a Mapped answer: nil
// when guid has nothing in the table, non-nil (maybe empty: a chain without
// map elements) when it has.
func forwardsOf(mapped map[string][]uint16, guid string) []uint16 {
	ports, ok := mapped[guid]
	if ok && ports == nil {
		ports = []uint16{}
	}
	return ports
}

// remove unmaps st's host ports (and extra ones), then runs CNI DEL. Both
// run whatever the other answers.
func (m *Manager) remove(ctx context.Context, st containerState, path string, extra []uint16) error {
	var errs []error
	ports := st.hostPorts()
	for _, p := range extra {
		if !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	if err := m.hostPorts.Unfilter(ctx, st.GUID); err != nil {
		errs = append(errs, err)
	}
	if err := m.hostPorts.Unmap(ctx, st.GUID, ports); err != nil {
		errs = append(errs, err)
	}
	if err := m.cni.Remove(ctx, st.cniID(), path); err != nil {
		errs = append(errs, fmt.Errorf("cni del %s: %w", st.GUID, err))
	}
	return errors.Join(errs...)
}

// Restore gives back the network of a container that survived an agent
// restart and marks its host ports in use.
func (m *Manager) Restore(logger lager.Logger, guid string) (Result, error) {
	logger = logger.Session("network.restore", lager.Data{logKeyGUID: guid})
	if err := ValidateGUID(guid); err != nil {
		return Result{}, err
	}
	defer m.locks.lock(guid)()
	st, found, err := m.states.load(guid)
	if err != nil {
		return Result{}, err
	}
	if !found {
		return Result{}, fmt.Errorf("%w: %s has no network state", ErrNotFound, guid)
	}
	if !st.Complete {
		return Result{}, fmt.Errorf("%w: setup of %s never finished", ErrNotFound, guid)
	}
	if st.Mode == ModeBridge {
		if m.namespaces == nil {
			return Result{}, fmt.Errorf("%w: %s was set up in bridge mode, agent runs in %s mode", ErrNotFound, guid, m.cfg.Mode)
		}
		if _, ok := m.namespaces.Path(st.NetNSName); !ok {
			return Result{}, fmt.Errorf("%w: netns %s of %s is gone", ErrNotFound, st.NetNSName, guid)
		}
	}
	if err := m.ports.MarkInUse(guid, st.hostPorts()); err != nil {
		return Result{}, fmt.Errorf("restore network of %s: %w", guid, err)
	}
	if st.Mode == ModeBridge && m.hostPorts != nil {
		m.reapplyLocked(logger, st)
	}
	m.repinNeighbour(logger, st)
	logger.Info("restored", lager.Data{"ipv4": st.IPv4.String(), "ports": st.Ports})
	return st.result(), nil
}

func validateContainerPorts(ports []uint16) error {
	var errs []error
	for i, p := range ports {
		if p == 0 {
			errs = append(errs, errors.New("container port 0"))
		}
		if slices.Contains(ports[:i], p) {
			errs = append(errs, fmt.Errorf("container port %d given twice", p))
		}
	}
	return errors.Join(errs...)
}

// addressesOf picks the container interface's addresses from a CNI result.
func addressesOf(res *gocni.Result) (ipv4, ipv6 net.IP, err error) {
	if res != nil {
		if iface, ok := res.Interfaces[containerIfName]; ok && iface != nil {
			for _, c := range iface.IPConfigs {
				switch {
				case c.IP.To4() != nil && ipv4 == nil:
					ipv4 = c.IP.To4()
				case c.IP.To4() == nil && ipv6 == nil:
					ipv6 = c.IP
				}
			}
		}
	}
	if ipv4 == nil {
		return nil, nil, fmt.Errorf("cni result has no IPv4 address on %s", containerIfName)
	}
	return ipv4, ipv6, nil
}

// keyedMutex serialises operations per key (container guid).
type keyedMutex struct {
	mu    sync.Mutex // guards locks
	locks map[string]*refMutex
}

type refMutex struct {
	sync.Mutex
	refs int // guarded by keyedMutex.mu
}

// lock locks key and returns the unlock function.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*refMutex{}
	}
	l, ok := k.locks[key]
	if !ok {
		l = &refMutex{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()

	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
