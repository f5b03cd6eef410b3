package network

import "github.com/cellagent/cellagent/executor/netrules"

// Exported for tests only.
var (
	ExternalIPFrom = externalIPFrom
	ParseCPULine   = parseCPULine
	BusyBetween    = busyBetween
	LeftSocket     = leftSocket
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

// IsolatePorts is isolatePorts, for tests.
var IsolatePorts = isolatePorts

// DirInodes answers the names and inodes readDirInodes finds in dir.
func DirInodes(dir string) (map[string]uint64, error) {
	ents, err := readDirInodes(dir)
	if err != nil {
		return nil, err
	}
	m := map[string]uint64{}
	for _, e := range ents {
		m[e.name] = e.ino
	}
	return m, nil
}

// ParseDirents answers the names and inodes of a getdents64 answer.
func ParseDirents(buf []byte) (map[string]uint64, error) {
	ents, err := parseDirents(buf, nil)
	m := map[string]uint64{}
	for _, e := range ents {
		m[e.name] = e.ino
	}
	return m, err
}

// GetSetElemRequest is getSetElemRequest, for tests.
var GetSetElemRequest = getSetElemRequest

// DecodeSetElem answers the chain and comment decodeSetElem reads.
func DecodeSetElem(data []byte) (chain, comment string, err error) {
	el, err := decodeSetElem(data)
	return el.chain, el.comment, err
}
