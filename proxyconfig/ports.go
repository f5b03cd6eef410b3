package proxyconfig

import (
	"errors"
	"fmt"
	"math"
)

const (
	// FirstProxyPort is the first port handed to a proxy listener.
	FirstProxyPort uint16 = 61001
	// C2CTLSPort is reserved for container-to-container TLS; never allocated.
	C2CTLSPort uint16 = 61443
)

var (
	// ErrReservedPort: an app port is 61443 or falls in the range the proxy
	// allocates for itself. The agent answers InvalidRequest.
	ErrReservedPort = errors.New("port reserved for the proxy")
	// ErrInvalidPort: an app port is 0 or listed twice. InvalidRequest too.
	ErrInvalidPort = errors.New("invalid app port")
	// ErrNoFreePorts: the ports above FirstProxyPort ran out (thousands of
	// app ports); not reachable with validated requests of sane size.
	ErrNoFreePorts = errors.New("no free proxy ports")
)

// Mapping is one app port and the TLS proxy port in front of it.
type Mapping struct {
	AppPort   uint16 `json:"app_port"`
	ProxyPort uint16 `json:"proxy_port"`
	// HTTP2 makes the listener offer ALPN "h2,http/1.1" (AlpnProtocols), as
	// Diego's Envoy does with http2 enabled; set when a route on the port
	// has protocol http2. Bytes still pass through untouched: an h2 client
	// speaks h2 to the app (h2c behind the proxy).
	HTTP2 bool `json:"http2,omitempty"`
	// C2C marks Diego's container-to-container listener (ProxyPort
	// C2CTLSPort): it serves the c2c certificate (C2CCertAndKeyFile), asks no
	// client certificate and offers no ALPN.
	C2C bool `json:"c2c,omitempty"`
}

// C2CMapping is the listener Diego adds for app port 8080 (the default
// HTTP port): 61443, reachable from other containers only.
func C2CMapping() Mapping { return Mapping{AppPort: DefaultHTTPPort, ProxyPort: C2CTLSPort, C2C: true} }

// DefaultHTTPPort is the app port that gets the c2c listener, as in Diego.
const DefaultHTTPPort = 8080

// ValidateAppPorts checks the app ports of a request that will get a proxy.
//
// The rule: with n distinct app ports the proxy uses n listener ports and one
// admin port, i.e. [61001, 61001+n] when nothing has to be skipped. A port in
// that range, or 61443, is rejected with ErrReservedPort, so a validated
// request gets exactly 61001..61000+n as proxy ports and 61001+n as admin port.
// Ports above the range (e.g. 61100 with n=1) do not collide and are allowed.
// Zero and duplicate ports are rejected with ErrInvalidPort. Every problem is
// reported (errors.Join).
func ValidateAppPorts(ports []uint16) error {
	var errs []error
	seen := make(map[uint16]bool, len(ports))
	last := uint32(FirstProxyPort) + uint32(len(ports)) // admin port when nothing is skipped
	for _, p := range ports {
		switch {
		case p == 0:
			errs = append(errs, fmt.Errorf("%w: 0", ErrInvalidPort))
		case seen[p]:
			errs = append(errs, fmt.Errorf("%w: %d listed twice", ErrInvalidPort, p))
		case p == C2CTLSPort:
			errs = append(errs, fmt.Errorf("%w: %d is reserved for container-to-container TLS", ErrReservedPort, p))
		case uint32(p) >= uint32(FirstProxyPort) && uint32(p) <= last:
			errs = append(errs, fmt.Errorf("%w: %d is in the proxy range %d-%d", ErrReservedPort, p, FirstProxyPort, last))
		}
		seen[p] = true
	}
	return errors.Join(errs...)
}

// AllocatePorts gives each distinct app port, in order, a proxy port counting
// up from 61001, skipping app ports and 61443; the admin port is the next
// port after the last proxy port that is neither. It is deterministic, so the
// agent can recompute the mapping of a container it adopts after a restart.
func AllocatePorts(appPorts []uint16) ([]Mapping, uint16, error) {
	taken := map[uint16]bool{C2CTLSPort: true}
	seen := make(map[uint16]bool, len(appPorts))
	unique := make([]uint16, 0, len(appPorts))
	for _, p := range appPorts {
		if !seen[p] {
			unique = append(unique, p)
		}
		seen[p] = true
		taken[p] = true
	}
	next := uint32(FirstProxyPort)
	free := func() (uint16, error) {
		for ; next <= math.MaxUint16; next++ {
			if !taken[uint16(next)] {
				p := uint16(next)
				next++
				return p, nil
			}
		}
		return 0, fmt.Errorf("%w: %d app ports", ErrNoFreePorts, len(unique))
	}
	mappings := make([]Mapping, 0, len(unique))
	for _, app := range unique {
		proxy, err := free()
		if err != nil {
			return nil, 0, err
		}
		mappings = append(mappings, Mapping{AppPort: app, ProxyPort: proxy})
	}
	admin, err := free()
	if err != nil {
		return nil, 0, err
	}
	return mappings, admin, nil
}
