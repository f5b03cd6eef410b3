package network

import (
	"context"
	"errors"
	"fmt"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/executor"
)

// Hook plugs the Manager into the container store: it gives each
// container its netns, IP and host ports.
type Hook struct {
	Manager *Manager
	// ProxyPortsPerAppPort is how many extra host ports each app port needs
	// (1 with the proxy on), for the synchronous capacity check.
	ProxyPortsPerAppPort int
}

var (
	_ containerstore.SetupHook        = (*Hook)(nil)
	_ containerstore.Restorer         = (*Hook)(nil)
	_ containerstore.OrphanCleaner    = (*Hook)(nil)
	_ containerstore.RequestValidator = (*Hook)(nil)
)

func (h *Hook) Name() string { return "network" }

// ValidateRequest refuses at once a request whose ports cannot be mapped
// now; the allocation itself happens at Setup.
func (h *Hook) ValidateRequest(req *executor.RunRequest) error {
	if _, err := canonicalSpec(FilterSpecOf(req)); err != nil {
		return executor.NewError(executor.ErrInvalidRequest, "%v", err)
	}
	if h.Manager.cfg.Mode == ModeHost {
		return nil
	}
	need := len(req.Ports) * (1 + h.ProxyPortsPerAppPort)
	inUse, quarantined := h.Manager.ports.Stats()
	total := int(h.Manager.ports.last) - int(h.Manager.ports.first) + 1
	if free := total - inUse - quarantined; need > free {
		return executor.NewError(executor.ErrInsufficientResources,
			"insufficient host ports: need %d, %d free in %s (%d in use, %d in quarantine)",
			need, free, h.Manager.cfg.HostPortRange, inUse, quarantined)
	}
	return nil
}

func (h *Hook) Setup(ctx context.Context, logger lager.Logger, inst *containerstore.Instance) error {
	res, err := h.Manager.SetupFiltered(ctx, logger, inst.GUID, inst.ContainerPorts(), FilterSpecOf(&inst.Request))
	if err != nil {
		if errors.Is(err, ErrInsufficientPorts) || errors.Is(err, ErrPortInUse) {
			return fmt.Errorf("%w: %v", executor.ErrInsufficientResources, err)
		}
		return err
	}
	apply(inst, res)
	return nil
}

func (h *Hook) Teardown(ctx context.Context, logger lager.Logger, guid string) error {
	return h.Manager.Teardown(ctx, logger, guid)
}

func (h *Hook) Restore(ctx context.Context, logger lager.Logger, inst *containerstore.Instance) error {
	res, err := h.Manager.Restore(logger, inst.GUID)
	if err != nil {
		return err
	}
	apply(inst, res)
	return nil
}

func (h *Hook) CleanupOrphans(ctx context.Context, logger lager.Logger, keep func(string) bool) error {
	return h.Manager.CleanupOrphans(ctx, logger, keep)
}

// apply copies a network result into the instance, pairing each app port
// with its proxy port's mapping.
func apply(inst *containerstore.Instance, res Result) {
	inst.NetNSPath = res.NetNSPath
	if res.IPv4 != nil {
		inst.InternalIP = res.IPv4.String()
	}
	if res.IPv6 != nil {
		inst.InternalIPv6 = res.IPv6.String()
	}
	if res.ExternalIP != nil {
		inst.ExternalIP = res.ExternalIP.String()
	}
	host := map[uint16]uint16{}
	for _, p := range res.Ports {
		host[p.ContainerPort] = p.HostPort
	}
	inst.Ports = make([]executor.PortMapping, 0, len(inst.Request.Ports))
	for _, p := range inst.Request.Ports {
		m := executor.PortMapping{ContainerPort: p, HostPort: host[p]}
		if pp, ok := inst.ProxyPorts[p]; ok {
			m.ContainerTLSProxyPort, m.HostTLSProxyPort = pp, host[pp]
		}
		inst.Ports = append(inst.Ports, m)
	}
}
