package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"slices"
	"sync"

	"code.cloudfoundry.org/lager/v3"
)

// Held is what the agent's table holds of one container, as the marks of
// the batches that made it. Each Map and each Filter is one netlink batch,
// which the kernel applies whole or not at all; the batch writes its mark
// (forwardMark, filterMark: a fingerprint of its arguments) as the comment
// of the map elements it adds. A mark found in the table therefore means
// that the batch it fingerprints is there, rules, counters and sets
// included, without reading any rule back.
type Held struct {
	// HostPorts are the hostports elements that lead to c_<guid>, sorted.
	HostPorts []uint16
	// ForwardMark is the mark of those elements; empty when they carry
	// none or not all the same one.
	ForwardMark string
	// FilterMark is the mark of the egress and ingress elements that lead
	// to e_<guid> and i_<guid>; empty unless both carry the same one.
	FilterMark string
}

// markVersion changes whenever the rules a Map or Filter makes for the
// same arguments change: an agent of another version re-applies them.
const markVersion = 1

// forwardMark fingerprints a Map(guid, ip, ports).
func forwardMark(guid string, ip net.IP, ports []PortMapping) string {
	return mark(struct {
		V     int
		GUID  string
		IP    string
		Ports []PortMapping
	}{markVersion, guid, ip.String(), ports})
}

// filterMark fingerprints a Filter(guid, ip, spec).
func filterMark(guid string, ip net.IP, spec FilterSpec) string {
	return mark(struct {
		V    int
		GUID string
		IP   string
		Spec FilterSpec
	}{markVersion, guid, ip.String(), spec})
}

func mark(v any) string {
	b, _ := json.Marshal(v) // plain structs: cannot fail
	sum := sha256.Sum256(b)
	return "cellagent:" + hex.EncodeToString(sum[:12])
}

// restoreWork says which of st's batches the table no longer holds: the
// forwards (Map) and the filter (Filter with spec). known is false when
// the table could not be read: then both are applied again.
func restoreWork(st containerState, spec FilterSpec, held Held, known bool) (forwards, filter bool) {
	if !known {
		return len(st.Ports) > 0, true
	}
	if len(st.Ports) > 0 {
		want := slices.Sorted(slices.Values(st.hostPorts()))
		forwards = !slices.Equal(held.HostPorts, want) || held.ForwardMark != forwardMark(st.GUID, st.IPv4, st.Ports)
	}
	filter = held.FilterMark != filterMark(st.GUID, st.IPv4, spec)
	return forwards, filter
}

// heldTable is the table as Restore found it: read once, at the first
// Restore after the agent started (the table changes meanwhile only
// through operations on a container, which Restore of that container
// precedes). Each container's entry is handed out once; what a later call
// would need is read afresh by re-applying.
type heldTable struct {
	mu     sync.Mutex // guards the fields below
	loaded bool
	ok     bool
	byGUID map[string]Held
}

// take answers what the table held of guid when first read, reading it
// now if this is the first call; ok is false when it could not be read.
func (h *heldTable) take(ctx context.Context, logger lager.Logger, hp HostPorts, guid string) (Held, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.loaded {
		h.loaded = true
		held, err := hp.Held(ctx)
		if err != nil {
			logger.Error("failed-to-read-table", err)
		} else {
			h.ok, h.byGUID = true, held
		}
	}
	held, ok := h.byGUID[guid]
	if !ok {
		return Held{}, h.ok
	}
	delete(h.byGUID, guid)
	return held, true
}

// reapplyLocked installs again what the table no longer holds of st (an
// `nft flush ruleset`, a reloaded nftables.service, a table of an older
// agent); on a plain agent restart the table holds everything and nothing
// is sent to the kernel. A failure is logged, not fatal: the container
// runs either way. Called with st's guid locked.
func (m *Manager) reapplyLocked(logger lager.Logger, st containerState) {
	// Exactly the rules it had; a state from before filters gets today's
	// defaults.
	if st.Filter == nil {
		st.DefaultEgress, st.Filter = m.defaultEgress, &FilterSpec{}
	}
	spec := st.effectiveFilter()
	held, known := m.held.take(context.Background(), logger, m.hostPorts, st.GUID)
	forwards, filter := restoreWork(st, spec, held, known)
	if forwards {
		if err := m.hostPorts.Map(context.Background(), st.GUID, st.IPv4, st.Ports); err != nil {
			logger.Error("failed-to-reapply-host-ports", err)
		}
	}
	// Without its chains the container is not open but cut off: the base
	// chains drop what no container chain takes.
	if filter {
		if err := m.hostPorts.Filter(context.Background(), st.GUID, st.IPv4, spec); err != nil {
			logger.Error("failed-to-reapply-filter", err)
		}
	}
	if forwards || filter {
		logger.Info("reapplied", lager.Data{"host-ports": forwards, "filter": filter})
	}
}
