package routetable

import (
	"net"
	"strconv"
)

// Subjects of Gorouter's NATS protocol.
const (
	SubjectRegister   = "router.register"
	SubjectUnregister = "router.unregister"
	SubjectGreet      = "router.greet"
	SubjectStart      = "router.start"
)

// RouteOptions is the "options" object of a registration: Gorouter's
// RegistryMessageOpts.
type RouteOptions struct {
	LoadBalancing string `json:"loadbalancing,omitempty"`
}

// RegistryMessage is the body of router.register and router.unregister.
// The JSON types must match Gorouter's (mbus/subscriber.go): a type error
// makes it drop the whole message. PrivateInstanceIndex is a string there.
// Names and omissions of the optional fields are route-emitter's
// (routingtable/registry_message.go).
type RegistryMessage struct {
	Host                 string            `json:"host"`
	Port                 uint16            `json:"port"`
	TLSPort              uint16            `json:"tls_port,omitempty"`
	URIs                 []string          `json:"uris"`
	Protocol             string            `json:"protocol,omitempty"`
	App                  string            `json:"app"`
	RouteServiceURL      string            `json:"route_service_url,omitempty"`
	PrivateInstanceID    string            `json:"private_instance_id"`
	PrivateInstanceIndex string            `json:"private_instance_index"`
	ServerCertDomainSAN  string            `json:"server_cert_domain_san"`
	IsolationSegment     string            `json:"isolation_segment,omitempty"`
	AvailabilityZone     string            `json:"availability_zone"`
	Tags                 map[string]string `json:"tags"`
	// EndpointUpdatedAtNs is set, as route-emitter sets it, only in the
	// first registration of an endpoint (Gorouter measures its route
	// registration latency from it); re-emissions carry 0, left out.
	EndpointUpdatedAtNs int64         `json:"endpoint_updated_at_ns,omitempty"`
	Options             *RouteOptions `json:"options,omitempty"`
}

// Address is the endpoint key Gorouter uses: host:(tls_port or port).
func (m RegistryMessage) Address() string {
	port := m.Port
	if m.TLSPort != 0 {
		port = m.TLSPort
	}
	return net.JoinHostPort(m.Host, strconv.Itoa(int(port)))
}

// TLS reports whether Gorouter treats the endpoint as a TLS endpoint.
func (m RegistryMessage) TLS() bool { return m.TLSPort != 0 }
