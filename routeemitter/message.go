package routeemitter

import (
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/cellagent/cellagent/routeemitter/routetable"
)

// Component is the value of the "component" tag of every registration.
const Component = "cellagent"

// Endpoint is one instance as the agent sees it: who it is, where it listens
// and which routes point at it.
type Endpoint struct {
	GUID    string
	LogGUID string
	Index   int
	// ExternalIP is the cell's address (host ports); InternalIP the
	// container's (container ports, InstanceAddress mode).
	ExternalIP string
	InternalIP string
	Mappings   []Mapping
	Routes     []Route
	// Tags are the instance's metric tags, resolved (ResolveMetricTags);
	// every message carries them plus "component".
	Tags map[string]string
}

// Mapping is one app port of the instance. The TLS ports are those of the
// instance's proxy; zero when the instance has no proxy.
type Mapping struct {
	ContainerPort    uint16
	HostPort         uint16
	ContainerTLSPort uint16
	HostTLSPort      uint16
}

// Route is a set of hostnames (optionally with a path) served on one
// container port.
type Route struct {
	Hostnames []string `json:"hostnames"`
	Port      uint16   `json:"port"`
	// The per-route fields route-emitter sends and Gorouter acts on
	// (see ValidateRoutes for what each accepts).
	RouteServiceURL  string                   `json:"route_service_url,omitempty"`
	IsolationSegment string                   `json:"isolation_segment,omitempty"`
	Protocol         string                   `json:"protocol,omitempty"`
	Options          *routetable.RouteOptions `json:"options,omitempty"`
}

// sameEndpoint reports whether a and b address the same Gorouter endpoint
// with the same ports, i.e. an unregister built from one removes the other.
func sameEndpoint(a, b routetable.RegistryMessage) bool {
	return a.Host == b.Host && a.Port == b.Port && a.TLSPort == b.TLSPort
}

// BuildMessages answers one registration per route and matching port mapping
// of ep: host and ports are the cell's external IP and host ports, or with
// instanceAddress the container IP and container ports. tls_port is the
// proxy's port and is left out when the instance has no proxy. Routes whose
// port has no mapping, and mappings without a usable port, give no message;
// ValidateRoutes reports the former. now stamps endpoint_updated_at_ns
// (the caller zeroes it in all but an endpoint's first registration).
func BuildMessages(ep Endpoint, az string, instanceAddress bool, now time.Time) []routetable.RegistryMessage {
	var msgs []routetable.RegistryMessage
	for _, r := range ep.Routes {
		if len(r.Hostnames) == 0 {
			continue
		}
		for _, m := range ep.Mappings {
			if m.ContainerPort != r.Port {
				continue
			}
			host, port, tlsPort := ep.ExternalIP, m.HostPort, m.HostTLSPort
			if instanceAddress {
				host, port, tlsPort = ep.InternalIP, m.ContainerPort, m.ContainerTLSPort
			}
			if host == "" || port == 0 {
				continue
			}
			tags := maps.Clone(ep.Tags)
			if tags == nil {
				tags = map[string]string{}
			}
			tags["component"] = Component
			var opts *routetable.RouteOptions
			if r.Options != nil && *r.Options != (routetable.RouteOptions{}) {
				o := *r.Options
				opts = &o
			}
			msgs = append(msgs, routetable.RegistryMessage{
				Host:                 host,
				Port:                 port,
				TLSPort:              tlsPort,
				URIs:                 slices.Clone(r.Hostnames),
				Protocol:             r.Protocol,
				App:                  ep.LogGUID,
				RouteServiceURL:      r.RouteServiceURL,
				PrivateInstanceID:    ep.GUID,
				PrivateInstanceIndex: strconv.Itoa(ep.Index),
				ServerCertDomainSAN:  ep.GUID,
				IsolationSegment:     r.IsolationSegment,
				AvailabilityZone:     az,
				Tags:                 tags,
				EndpointUpdatedAtNs:  now.UnixNano(),
				Options:              opts,
			})
		}
	}
	return msgs
}

// sameRegistrations reports whether a and b register the same routes,
// ignoring endpoint_updated_at_ns.
func sameRegistrations(a, b []routetable.RegistryMessage) bool {
	return slices.EqualFunc(a, b, func(x, y routetable.RegistryMessage) bool {
		return x.Host == y.Host && x.Port == y.Port && x.TLSPort == y.TLSPort &&
			slices.Equal(x.URIs, y.URIs) && x.App == y.App &&
			x.PrivateInstanceID == y.PrivateInstanceID &&
			x.PrivateInstanceIndex == y.PrivateInstanceIndex &&
			x.ServerCertDomainSAN == y.ServerCertDomainSAN &&
			x.AvailabilityZone == y.AvailabilityZone &&
			x.Protocol == y.Protocol && x.RouteServiceURL == y.RouteServiceURL &&
			x.IsolationSegment == y.IsolationSegment &&
			maps.Equal(x.Tags, y.Tags) &&
			(x.Options == nil) == (y.Options == nil) && (x.Options == nil || *x.Options == *y.Options)
	})
}

// subtractRoutes answers the parts of old that are not registered by cur:
// per endpoint, the uris cur no longer carries. Unregistering the result
// removes exactly what was dropped and nothing cur still registers.
func subtractRoutes(old, cur []routetable.RegistryMessage) []routetable.RegistryMessage {
	var out []routetable.RegistryMessage
	for _, o := range old {
		var gone []string
		for _, uri := range o.URIs {
			kept := slices.ContainsFunc(cur, func(c routetable.RegistryMessage) bool {
				return sameEndpoint(o, c) && slices.Contains(c.URIs, uri)
			})
			if !kept {
				gone = append(gone, uri)
			}
		}
		if len(gone) > 0 {
			m := o
			m.URIs = gone
			out = append(out, m)
		}
	}
	return out
}
