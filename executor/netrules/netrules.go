package netrules

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/cellagent/cellagent/executor"
)

// Protocols of an egress rule or a network policy.
const (
	ProtoTCP  = "tcp"
	ProtoUDP  = "udp"
	ProtoICMP = "icmp"
	ProtoAll  = "all"
)

// ValidateEgressRules checks rules (field names the list in messages) and
// returns them in canonical form: lower-case protocol, merged destination
// ranges and merged port ranges. It reports every problem at once.
func ValidateEgressRules(field string, rules []executor.EgressRule) ([]executor.EgressRule, error) {
	var errs []error
	var out []executor.EgressRule // nil when empty, as after a JSON round trip
	for i, r := range rules {
		at := fmt.Sprintf("%s[%d]", field, i)
		c := executor.EgressRule{Protocol: strings.ToLower(strings.TrimSpace(r.Protocol)), Log: r.Log}
		switch c.Protocol {
		case ProtoTCP, ProtoUDP:
			ports, err := canonicalPorts(r.Ports)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.ports: %w", at, err))
			}
			c.Ports = ports
		case ProtoICMP, ProtoAll:
			if strings.TrimSpace(r.Ports) != "" {
				errs = append(errs, fmt.Errorf("%s.ports %q: ports need protocol tcp or udp, not %s", at, r.Ports, c.Protocol))
			}
		default:
			errs = append(errs, fmt.Errorf("%s.protocol %q: must be tcp, udp, icmp or all", at, r.Protocol))
		}
		if len(r.Destinations) == 0 {
			errs = append(errs, fmt.Errorf("%s.destinations: at least one address, CIDR or range a-b is needed", at))
		}
		var ranges []Range
		for j, d := range r.Destinations {
			rg, err := ParseDestination(d)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.destinations[%d]: %w", at, j, err))
				continue
			}
			ranges = append(ranges, rg)
		}
		for _, rg := range MergeRanges(ranges) {
			c.Destinations = append(c.Destinations, rg.String())
		}
		out = append(out, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// ValidatePolicies checks network policies and returns them in canonical
// form.
func ValidatePolicies(field string, policies []executor.NetworkPolicy) ([]executor.NetworkPolicy, error) {
	var errs []error
	var out []executor.NetworkPolicy
	for i, p := range policies {
		at := fmt.Sprintf("%s[%d]", field, i)
		c := executor.NetworkPolicy{SourceLogGUID: p.SourceLogGUID, Protocol: strings.ToLower(strings.TrimSpace(p.Protocol))}
		if c.Protocol == "" {
			c.Protocol = ProtoTCP
		}
		if c.Protocol != ProtoTCP && c.Protocol != ProtoUDP {
			errs = append(errs, fmt.Errorf("%s.protocol %q: must be tcp or udp", at, p.Protocol))
		}
		if p.SourceLogGUID == "" || len(p.SourceLogGUID) > 256 {
			errs = append(errs, fmt.Errorf("%s.source_log_guid: must be 1-256 characters", at))
		}
		if strings.TrimSpace(p.Ports) == "" {
			errs = append(errs, fmt.Errorf("%s.ports: a policy needs ports", at))
		} else if ports, err := canonicalPorts(p.Ports); err != nil {
			errs = append(errs, fmt.Errorf("%s.ports: %w", at, err))
		} else {
			c.Ports = ports
		}
		out = append(out, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Range is an inclusive range of IPv4 addresses (or of ports).
type Range struct{ First, Last uint32 }

func (r Range) String() string {
	if r.First == r.Last {
		return IPv4(r.First).String()
	}
	return IPv4(r.First).String() + "-" + IPv4(r.Last).String()
}

// IPv4 is the address whose big-endian value is v.
func IPv4(v uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, v)
	return ip
}

// ParseDestination reads an address, a CIDR or a range "a-b" (IPv4 only:
// the containers have no other).
func ParseDestination(s string) (Range, error) {
	d := strings.TrimSpace(s)
	bad := func(why string) (Range, error) {
		return Range{}, fmt.Errorf("%q: %s", s, why)
	}
	if a, b, ok := strings.Cut(d, "-"); ok {
		first, last := net.ParseIP(strings.TrimSpace(a)).To4(), net.ParseIP(strings.TrimSpace(b)).To4()
		if first == nil || last == nil {
			return bad("a range must be two IPv4 addresses a-b")
		}
		r := Range{binary.BigEndian.Uint32(first), binary.BigEndian.Uint32(last)}
		if r.First > r.Last {
			return bad("the range ends before it starts")
		}
		return r, nil
	}
	if strings.Contains(d, "/") {
		ip, ipnet, err := net.ParseCIDR(d)
		if err != nil || ip.To4() == nil {
			return bad("not an IPv4 CIDR")
		}
		if !ip.Equal(ipnet.IP) {
			return bad(fmt.Sprintf("host bits set (did you mean %s?)", ipnet))
		}
		first := binary.BigEndian.Uint32(ipnet.IP.To4())
		ones, _ := ipnet.Mask.Size()
		return Range{first, first | uint32(uint64(1)<<(32-ones)-1)}, nil
	}
	ip := net.ParseIP(d).To4()
	if ip == nil {
		return bad("not an IPv4 address, CIDR or range a-b")
	}
	v := binary.BigEndian.Uint32(ip)
	return Range{v, v}, nil
}

// MergeRanges sorts ranges and merges the ones that overlap or touch (nft
// refuses overlapping elements in one set).
func MergeRanges(rs []Range) []Range {
	slices.SortFunc(rs, func(a, b Range) int {
		if a.First != b.First {
			if a.First < b.First {
				return -1
			}
			return 1
		}
		return 0
	})
	var out []Range
	for _, r := range rs {
		if n := len(out); n > 0 && uint64(r.First) <= uint64(out[n-1].Last)+1 {
			out[n-1].Last = max(out[n-1].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// canonicalPorts reads "80,443,8000-8010" and returns it sorted with
// overlaps merged; "" stays "" (all ports).
func canonicalPorts(s string) (string, error) {
	if strings.TrimSpace(s) == "" {
		return "", nil
	}
	var rs []Range
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		a, b, isRange := strings.Cut(part, "-")
		first, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
		last, err2 := first, error(nil)
		if isRange {
			last, err2 = strconv.ParseUint(strings.TrimSpace(b), 10, 16)
		}
		switch {
		case err1 != nil || err2 != nil:
			return "", fmt.Errorf("%q: %q is not a port or a range of ports like 8000-8010", s, part)
		case first == 0 || last == 0:
			return "", fmt.Errorf("%q: port 0", s)
		case first > last:
			return "", fmt.Errorf("%q: the range %s ends before it starts", s, part)
		}
		rs = append(rs, Range{uint32(first), uint32(last)})
	}
	var parts []string
	for _, r := range MergeRanges(rs) {
		if r.First == r.Last {
			parts = append(parts, strconv.Itoa(int(r.First)))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", r.First, r.Last))
		}
	}
	return strings.Join(parts, ","), nil
}
