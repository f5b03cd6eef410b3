package network

import "github.com/cellagent/cellagent/executor/netrules"

// Exported for tests only.
var (
	ExternalIPFrom = externalIPFrom
)

// Covers says whether one of the canonical destinations holds ip.
func Covers(dests []string, ip string) bool {
	want, err := netrules.ParseDestination(ip)
	if err != nil {
		return false
	}
	for _, d := range dests {
		if r, err := netrules.ParseDestination(d); err == nil && r.First <= want.First && want.Last <= r.Last {
			return true
		}
	}
	return false
}

// The marks Map and Filter leave in the table.
var (
	ForwardMark = forwardMark
	FilterMark  = filterMark
)

// EncodeNeigh is encodeNeigh, for tests.
var EncodeNeigh = encodeNeigh

// IfIndex is ifindex, for tests.
var IfIndex = ifindex
