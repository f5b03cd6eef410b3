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
}

var (
	_ containerstore.SetupStep[containerstore.NetworkResult] = (*Network)(nil)
	_ containerstore.Restorer[containerstore.NetworkResult]  = (*Network)(nil)
	_ containerstore.OrphanCleaner                           = (*Network)(nil)
	_ containerstore.RequestValidator                        = (*Network)(nil)
	_ containerstore.HostPortChecker                         = (*Network)(nil)
)

func (h *Network) Name() string { return "network" }

// ValidateRequest refuses at once a request whose network rules are
// malformed; the allocation itself happens at Setup.
func (h *Network) ValidateRequest(req *executor.RunRequest) error {
	if err := network.ValidateFilterSpec(network.FilterSpecOf(req)); err != nil {
		return executor.NewError(executor.ErrInvalidRequest, "%v", err)
	}
	return nil
}

// CheckHostPorts refuses at once a request whose need host ports (the
// store counts app and proxy ports) cannot be mapped now.
func (h *Network) CheckHostPorts(need int) error {
	if h.Manager.Mode() == network.ModeHost {
		return nil
	}
	st := h.Manager.HostPorts()
	if need > st.Free {
		return executor.NewError(executor.ErrInsufficientResources,
			"insufficient host ports: need %d, %d free in %s (%d in use, %d in quarantine)",
			need, st.Free, st.Range, st.InUse, st.Quarantined)
	}
	return nil
}

func (h *Network) Setup(ctx context.Context, logger lager.Logger, in containerstore.Instance) (containerstore.NetworkResult, error) {
	res, err := h.Manager.SetupFiltered(ctx, logger, in.GUID, in.ContainerPorts(), network.FilterSpecOf(&in.Request))
	if err != nil {
		if errors.Is(err, network.ErrInsufficientPorts) || errors.Is(err, network.ErrPortInUse) {
			return containerstore.NetworkResult{}, fmt.Errorf("%w: %v", executor.ErrInsufficientResources, err)
		}
		return containerstore.NetworkResult{}, err
	}
	return networkResult(&in, res), nil
}

// Teardown gives a pooled namespace back to the pool only when the
// runtime deleted the container (no process of it can be left).
func (h *Network) Teardown(ctx context.Context, logger lager.Logger, guid string) error {
	if containerstore.ProcessesMayRun(ctx) {
		return h.Manager.Teardown(ctx, logger, guid)
	}
	return h.Manager.TeardownStopped(ctx, logger, guid)
}

func (h *Network) Restore(ctx context.Context, logger lager.Logger, in containerstore.Instance) (containerstore.NetworkResult, error) {
	res, err := h.Manager.Restore(logger, in.GUID)
	if err != nil {
		return containerstore.NetworkResult{}, err
	}
	return networkResult(&in, res), nil
}

func (h *Network) CleanupOrphans(ctx context.Context, logger lager.Logger, keep func(string) bool) error {
	return h.Manager.CleanupOrphans(ctx, logger, keep)
}

// networkResult is the step's result of a network result for in, pairing
// each app port with its proxy port's mapping.
func networkResult(in *containerstore.Instance, res network.Result) containerstore.NetworkResult {
	out := containerstore.NetworkResult{NetNSPath: res.NetNSPath}
	if res.IPv4 != nil {
		out.InternalIP = res.IPv4.String()
	}
	if res.IPv6 != nil {
		out.InternalIPv6 = res.IPv6.String()
	}
	if res.ExternalIP != nil {
		out.ExternalIP = res.ExternalIP.String()
	}
	host := map[uint16]uint16{}
	for _, p := range res.Ports {
		host[p.ContainerPort] = p.HostPort
	}
	out.Ports = make([]executor.PortMapping, 0, len(in.Request.Ports))
	for _, p := range in.Request.Ports {
		m := executor.PortMapping{ContainerPort: p, HostPort: host[p]}
		if pp, ok := in.ProxyPorts[p]; ok {
			m.ContainerTLSProxyPort, m.HostTLSProxyPort = pp, host[pp]
		}
		out.Ports = append(out.Ports, m)
	}
	return out
}
