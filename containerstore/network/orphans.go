package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"code.cloudfoundry.org/lager/v3"
)

// CleanupOrphans tears down the network of every container this package
// knows of (a state file, a netns named <network>-<guid>, an IPAM lease,
// host ports in the allocator, or a chain in the nftables table) for which
// keep returns false. keep must
// return true for every container the agent tracks, including ones being
// set up right now. It goes on after a failure and returns all of them.
func (m *Manager) CleanupOrphans(ctx context.Context, logger lager.Logger, keep func(guid string) bool) error {
	logger = logger.Session("network.cleanup-orphans")
	var errs []error
	candidates, err := m.states.guids()
	if err != nil {
		errs = append(errs, err)
	}
	candidates = append(candidates, m.ports.Owners()...)

	var leases map[string][]net.IP
	var mapped map[string][]uint16
	if m.hostPorts != nil {
		if mapped, err = m.hostPorts.Mapped(ctx); err != nil {
			errs = append(errs, err)
		}
		for guid := range mapped {
			if ValidateGUID(guid) == nil {
				candidates = append(candidates, guid)
			}
		}
	}
	if m.namespaces != nil {
		names, err := m.namespaces.List()
		if err != nil {
			errs = append(errs, err)
		}
		for _, name := range names {
			if guid, ok := strings.CutPrefix(name, m.cfg.NetworkName+"-"); ok && ValidateGUID(guid) == nil {
				candidates = append(candidates, guid)
			}
		}
		if leases, err = ipamLeases(m.ipamDir); err != nil {
			errs = append(errs, err)
		}
		for guid := range leases {
			if ValidateGUID(guid) == nil {
				candidates = append(candidates, guid)
			}
		}
	}

	slices.Sort(candidates)
	candidates = slices.Compact(candidates)
	removed := 0
	for _, guid := range candidates {
		if keep(guid) {
			continue
		}
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if err := m.cleanupOrphan(ctx, logger, guid, leases[guid], forwardsOf(mapped, guid)); err != nil {
			logger.Error("failed-to-clean-up-orphan", err, lager.Data{logKeyGUID: guid})
			errs = append(errs, err)
			continue
		}
		removed++
	}
	logger.Info("done", lager.Data{"candidates": len(candidates), "removed": removed})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean up network orphans: %w", err)
	}
	return nil
}

func (m *Manager) cleanupOrphan(ctx context.Context, logger lager.Logger, guid string, leased []net.IP, mapped []uint16) error {
	defer m.locks.lock(guid)()
	return m.teardownLocked(ctx, logger.Session("orphan", lager.Data{logKeyGUID: guid}), guid, leased, mapped, false)
}
