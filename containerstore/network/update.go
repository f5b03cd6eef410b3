package network

import (
	"context"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/executor/netrules"
)

// SetEgress replaces guid's own egress rules on the running container, in
// one netlink batch; the cell's default rules it was set up with stay. A
// rule that does not validate changes nothing (executor.ErrInvalidRequest).
func (m *Manager) SetEgress(ctx context.Context, logger lager.Logger, guid string, rules []executor.EgressRule) (executor.NetworkFilter, error) {
	logger = logger.Session("network.set-egress", lager.Data{logKeyGUID: guid})
	if err := ValidateGUID(guid); err != nil {
		return executor.NetworkFilter{}, executor.NewError(executor.ErrInvalidRequest, "%v", err)
	}
	canon, err := netrules.ValidateEgressRules("egress_rules", rules)
	if err != nil {
		return executor.NetworkFilter{}, executor.NewError(executor.ErrInvalidRequest, "%v", err)
	}
	unlock := m.locks.lock(guid)
	defer unlock()
	st, err := m.filteredStateLocked(guid)
	if err != nil {
		return executor.NetworkFilter{}, err
	}
	old := *st.Filter
	next := old
	next.Egress = canon
	st.Filter = &next
	if err := m.hostPorts.Filter(ctx, guid, st.IPv4, st.effectiveFilter()); err != nil {
		return executor.NetworkFilter{}, err
	}
	if err := m.states.save(st); err != nil {
		// The table must not hold rules a restart would not restore.
		st.Filter = &old
		if rerr := m.hostPorts.Filter(context.WithoutCancel(ctx), guid, st.IPv4, st.effectiveFilter()); rerr != nil {
			logger.Error("failed-to-restore-old-rules", rerr)
		}
		return executor.NetworkFilter{}, err
	}
	logger.Info("egress-rules-set", lager.Data{"rules": len(canon)})
	return m.view(ctx, st), nil
}

// NetworkFilter answers guid's filter and its denial counts.
func (m *Manager) NetworkFilter(ctx context.Context, guid string) (executor.NetworkFilter, error) {
	if err := ValidateGUID(guid); err != nil {
		return executor.NetworkFilter{}, executor.NewError(executor.ErrInvalidRequest, "%v", err)
	}
	unlock := m.locks.lock(guid)
	st, err := m.filteredStateLocked(guid)
	unlock()
	if err != nil {
		return executor.NetworkFilter{}, err
	}
	return m.view(ctx, st), nil
}

// filteredStateLocked loads guid's state, which must be of a complete
// bridge-mode network.
func (m *Manager) filteredStateLocked(guid string) (containerState, error) {
	st, found, err := m.states.load(guid)
	if err != nil {
		return containerState{}, err
	}
	if !found || !st.Complete {
		return containerState{}, executor.NewError(executor.ErrContainerNotFound, "%s has no network", guid)
	}
	if st.Mode != ModeBridge {
		return containerState{}, executor.NewError(executor.ErrInvalidRequest, "%s runs in network mode %s, which filters nothing", guid, st.Mode)
	}
	if st.Filter == nil {
		st.DefaultEgress, st.Filter = m.defaultEgress, &FilterSpec{}
	}
	return st, nil
}

func (m *Manager) view(ctx context.Context, st containerState) executor.NetworkFilter {
	v := executor.NetworkFilter{GUID: st.GUID, LogGUID: st.Filter.LogGUID,
		DefaultEgress: nonNil(st.DefaultEgress), EgressRules: nonNil(st.Filter.Egress),
		NetworkPolicies: nonNil(st.Filter.Policies), Denied: map[string]uint64{}}
	if subnet, err := parseSubnet(m.cfg.Subnet); err == nil {
		v.AlwaysDenied = append(append(v.AlwaysDenied, alwaysDenied...), gateway(subnet).String())
	}
	if denied, err := m.hostPorts.Denied(ctx); err == nil {
		for dir, n := range denied[st.GUID] {
			v.Denied[dir] = n
		}
	}
	return v
}

// Denied answers the packets dropped per guid and direction (for metrics).
func (m *Manager) Denied(ctx context.Context) (map[string]map[string]uint64, error) {
	if m.hostPorts == nil {
		return nil, nil
	}
	return m.hostPorts.Denied(ctx)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// FilterSpecOf is the filter an instance's run request asks for.
func FilterSpecOf(req *executor.RunRequest) FilterSpec {
	return FilterSpec{LogGUID: req.LogGUID, Egress: req.EgressRules, Policies: req.NetworkPolicies}
}

// FilterAPI serves the filters to the HTTP API.
type FilterAPI struct {
	Manager *Manager
	Logger  lager.Logger
}

func (a FilterAPI) SetEgress(ctx context.Context, guid string, rules []executor.EgressRule) (executor.NetworkFilter, error) {
	return a.Manager.SetEgress(ctx, a.Logger, guid, rules)
}

func (a FilterAPI) NetworkFilter(ctx context.Context, guid string) (executor.NetworkFilter, error) {
	return a.Manager.NetworkFilter(ctx, guid)
}
