package routetable

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats.go"
)

// RouteEntry is one uri -> endpoint pair of a RouteTable.
type RouteEntry struct {
	URI string `json:"uri"`
	// Address is host:(tls_port or port), Gorouter's endpoint key.
	Address              string            `json:"address"`
	TLS                  bool              `json:"tls"`
	App                  string            `json:"app"`
	PrivateInstanceID    string            `json:"private_instance_id"`
	PrivateInstanceIndex string            `json:"private_instance_index"`
	ServerCertDomainSAN  string            `json:"server_cert_domain_san"`
	AvailabilityZone     string            `json:"availability_zone"`
	Tags                 map[string]string `json:"tags,omitempty"`
	EndpointUpdatedAtNs  int64             `json:"endpoint_updated_at_ns"`
}

type routeKey struct {
	uri     string
	address string
}

// RouteTable mirrors what a Gorouter would hold after the router.register
// and router.unregister messages applied to it: per uri, endpoints keyed by
// host:(tls_port or port); a register replaces the endpoint with the same
// key, an unregister removes it. It does not prune by time. Safe for
// concurrent use.
type RouteTable struct {
	mu sync.Mutex
	// routes is guarded by mu.
	routes map[routeKey]RouteEntry
}

// NewRouteTable answers an empty table.
func NewRouteTable() *RouteTable {
	return &RouteTable{routes: map[routeKey]RouteEntry{}}
}

// Apply applies one register (registered true) or unregister message and
// answers whether the table changed.
func (t *RouteTable) Apply(msg RegistryMessage, registered bool) bool {
	address := msg.Address()
	t.mu.Lock()
	defer t.mu.Unlock()
	changed := false
	for _, uri := range msg.URIs {
		key := routeKey{uri: normalizeURI(uri), address: address}
		if !registered {
			if _, ok := t.routes[key]; ok {
				delete(t.routes, key)
				changed = true
			}
			continue
		}
		entry := RouteEntry{
			URI:                  key.uri,
			Address:              address,
			TLS:                  msg.TLS(),
			App:                  msg.App,
			PrivateInstanceID:    msg.PrivateInstanceID,
			PrivateInstanceIndex: msg.PrivateInstanceIndex,
			ServerCertDomainSAN:  msg.ServerCertDomainSAN,
			AvailabilityZone:     msg.AvailabilityZone,
			Tags:                 maps.Clone(msg.Tags),
			EndpointUpdatedAtNs:  msg.EndpointUpdatedAtNs,
		}
		old, ok := t.routes[key]
		if !ok || !sameEntry(old, entry) {
			changed = true
		}
		t.routes[key] = entry
	}
	return changed
}

// Snapshot answers the table sorted by uri, then address.
func (t *RouteTable) Snapshot() []RouteEntry {
	t.mu.Lock()
	entries := slices.Collect(maps.Values(t.routes))
	t.mu.Unlock()
	slices.SortFunc(entries, func(a, b RouteEntry) int {
		return cmp.Or(cmp.Compare(a.URI, b.URI), cmp.Compare(a.Address, b.Address))
	})
	return entries
}

// Len answers the number of uri -> endpoint pairs.
func (t *RouteTable) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.routes)
}

// sameEntry ignores the timestamp, which re-emission does not change but a
// foreign emitter might.
func sameEntry(a, b RouteEntry) bool {
	a.EndpointUpdatedAtNs, b.EndpointUpdatedAtNs = 0, 0
	return a.URI == b.URI && a.Address == b.Address && a.TLS == b.TLS && a.App == b.App &&
		a.PrivateInstanceID == b.PrivateInstanceID && a.PrivateInstanceIndex == b.PrivateInstanceIndex &&
		a.ServerCertDomainSAN == b.ServerCertDomainSAN && a.AvailabilityZone == b.AvailabilityZone &&
		maps.Equal(a.Tags, b.Tags)
}

// normalizeURI is how Gorouter compares uris: case-insensitive, without a
// trailing slash.
func normalizeURI(uri string) string {
	return strings.ToLower(strings.TrimSuffix(uri, "/"))
}

// RouteEvent is one register or unregister message seen by WatchRoutes.
type RouteEvent struct {
	Registered bool
	Message    RegistryMessage
	// Changed reports whether the message changed the table (a re-emission
	// does not).
	Changed bool
}

// WatchRoutes subscribes to router.register and router.unregister on nc and
// applies every message to table, calling onChange (may be nil) after each,
// from one nats.go goroutine, in the order the messages arrived. Messages
// Gorouter would drop (bad JSON or JSON types) are logged and skipped.
// Unsubscribe the answered subscription to stop.
func WatchRoutes(logger lager.Logger, nc *nats.Conn, table *RouteTable, onChange func(RouteEvent)) (*nats.Subscription, error) {
	logger = logger.Session("routetable.watch")
	// One wildcard subscription keeps register and unregister in order.
	sub, err := nc.Subscribe("router.*", func(m *nats.Msg) {
		var registered bool
		switch m.Subject {
		case SubjectRegister:
			registered = true
		case SubjectUnregister:
		default:
			return
		}
		var msg RegistryMessage
		if err := json.Unmarshal(m.Data, &msg); err != nil {
			logger.Error("bad-registry-message", err, lager.Data{"subject": m.Subject})
			return
		}
		changed := table.Apply(msg, registered)
		if onChange != nil {
			onChange(RouteEvent{Registered: registered, Message: msg, Changed: changed})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("watch routes: %w", err)
	}
	return sub, nil
}
