package network

// What the store's adapter needs to refuse a request at once, before
// Setup allocates (internal/adapters).

// HostPortStats is the host port range's state now.
type HostPortStats struct {
	// Range is the configured range, "FIRST-LAST".
	Range string
	// Free ports can be allocated now: neither in use nor in quarantine.
	Free, InUse, Quarantined int
}

// Mode is ModeBridge or ModeHost.
func (m *Manager) Mode() string { return m.cfg.Mode }

// HostPorts answers the host port range's state.
func (m *Manager) HostPorts() HostPortStats {
	inUse, quarantined := m.ports.Stats()
	total := int(m.ports.last) - int(m.ports.first) + 1
	return HostPortStats{Range: m.cfg.HostPortRange, Free: total - inUse - quarantined, InUse: inUse, Quarantined: quarantined}
}

// ValidateFilterSpec checks spec as Setup and UpdateFilter would, without
// installing anything.
func ValidateFilterSpec(spec FilterSpec) error {
	_, err := canonicalSpec(spec)
	return err
}
