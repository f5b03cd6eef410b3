package network

// Exported for tests only.
var (
	ExternalIPFrom = externalIPFrom
)

// Covers says whether one of the canonical destinations holds ip.
func Covers(dests []string, ip string) bool {
	want, err := parseDestination(ip)
	if err != nil {
		return false
	}
	for _, d := range dests {
		if r, err := parseDestination(d); err == nil && r.first <= want.first && want.last <= r.last {
			return true
		}
	}
	return false
}
