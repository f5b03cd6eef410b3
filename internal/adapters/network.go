package adapters

import (
	"context"
	"errors"
	"fmt"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/containerstore/network"
	"github.com/cellagent/cellagent/executor"
)

// Network plugs the network manager into the container store: it gives
// each container its netns, IP and host ports.
type Network struct {
	Manager *network.Manager
	// ProxyPortsPerAppPort is how many extra host ports each app port needs
	// (1 with the proxy on), for the synchronous capacity check.
	ProxyPortsPerAppPort int
}

var (
	_ containerstore.SetupHook        = (*Network)(nil)
	_ containerstore.Restorer         = (*Network)(nil)
	_ containerstore.OrphanCleaner    = (*Network)(nil)
	_ containerstore.RequestValidator = (*Network)(nil)
)

func (h *Network) Name() string { return "network" }

// ValidateRequest refuses at once a request whose ports cannot be mapped
// now; the allocation itself happens at Setup.
func (h *Network) ValidateRequest(req *executor.RunRequest) error {
	if err := network.ValidateFilterSpec(network.FilterSpecOf(req)); err != nil {
		return executor.NewError(executor.ErrInvalidRequest, "%v", err)
	}
	if h.Manager.Mode() == network.ModeHost {
		return nil
	}
	need := len(req.Ports) * (1 + h.ProxyPortsPerAppPort)
	st := h.Manager.HostPorts()
	if need > st.Free {
		return executor.NewError(executor.ErrInsufficientResources,
			"insufficient host ports: need %d, %d free in %s (%d in use, %d in quarantine)",
			need, st.Free, st.Range, st.InUse, st.Quarantined)
	}
	return nil
}

func (h *Network) Setup(ctx context.Context, logger lager.Logger, inst *containerstore.Instance) error {
	res, err := h.Manager.SetupFiltered(ctx, logger, inst.GUID, inst.ContainerPorts(), network.FilterSpecOf(&inst.Request))
	if err != nil {
		if errors.Is(err, network.ErrInsufficientPorts) || errors.Is(err, network.ErrPortInUse) {
			return fmt.Errorf("%w: %v", executor.ErrInsufficientResources, err)
		}
		return err
	}
	applyNetwork(inst, res)
	return nil
}

func (h *Network) Teardown(ctx context.Context, logger lager.Logger, guid string) error {
	return h.Manager.Teardown(ctx, logger, guid)
}

func (h *Network) Restore(ctx context.Context, logger lager.Logger, inst *containerstore.Instance) error {
	res, err := h.Manager.Restore(logger, inst.GUID)
	if err != nil {
		return err
	}
	applyNetwork(inst, res)
	return nil
}

func (h *Network) CleanupOrphans(ctx context.Context, logger lager.Logger, keep func(string) bool) error {
	return h.Manager.CleanupOrphans(ctx, logger, keep)
}

// applyNetwork copies a network result into the instance, pairing each app port
// with its proxy port's mapping.
func applyNetwork(inst *containerstore.Instance, res network.Result) {
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
