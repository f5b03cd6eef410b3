package lrp

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/rep/models"
)

// icmpAny is Cloud Foundry's ICMP type or code "all" in an application
// security group (the Cloud Controller passes it to BBS unchanged).
const icmpAny = -1

// EgressRules maps BBS security group rules onto the agent's egress rules.
// A rule maps exactly or the whole list is refused, naming the rule and
// the field: an ICMP type or code other than "all" (the agent's icmp rule
// opens every type), icmpv6 (the containers have no IPv6), and anything
// BBS itself would not accept. No rule is widened: tcp and udp need ports
// (the agent reads no ports as all ports). Annotations are labels for
// people (Cloud Controller's security group guids); they set nothing and
// are not kept.
func EgressRules(rules []*models.SecurityGroupRule) ([]executor.EgressRule, error) {
	var out []executor.EgressRule
	for i, r := range rules {
		at := fmt.Sprintf("egress_rules[%d]", i)
		e := executor.EgressRule{Protocol: r.GetProtocol(), Log: r.GetLog()}
		switch r.GetProtocol() {
		case "tcp", "udp":
			if r.GetIcmpInfo() != nil {
				return nil, refuse("%s.icmp_info: only protocol icmp takes icmp_info, not %s", at, r.GetProtocol())
			}
			ports, err := rulePorts(r)
			if err != nil {
				return nil, refuse("%s.%v", at, err)
			}
			e.Ports = ports
		case "icmp", "all":
			if len(r.GetPorts()) > 0 || r.GetPortRange() != nil {
				return nil, refuse("%s: ports and port_range need protocol tcp or udp, not %s", at, r.GetProtocol())
			}
			icmp := r.GetIcmpInfo()
			if r.GetProtocol() == "all" && icmp != nil {
				return nil, refuse("%s.icmp_info: only protocol icmp takes icmp_info, not all", at)
			}
			if r.GetProtocol() == "icmp" && (icmp == nil || icmp.GetType() != icmpAny || icmp.GetCode() != icmpAny) {
				return nil, refuse("%s.icmp_info %s: this cell's icmp rules open every type and code; only type -1 code -1 (all) is supported",
					at, icmpString(icmp))
			}
		case "icmpv6":
			return nil, refuse("%s.protocol icmpv6: containers on this cell have no IPv6", at)
		default:
			return nil, refuse("%s.protocol %q: must be tcp, udp, icmp or all", at, r.GetProtocol())
		}
		// BBS allows a destination to be a comma-separated list.
		for _, d := range r.GetDestinations() {
			for _, part := range strings.Split(d, ",") {
				if part = strings.TrimSpace(part); part == "" {
					return nil, refuse("%s.destinations %q: empty destination", at, d)
				}
				e.Destinations = append(e.Destinations, part)
			}
		}
		if len(e.Destinations) == 0 {
			return nil, refuse("%s.destinations: at least one is needed", at)
		}
		out = append(out, e)
	}
	return out, nil
}

// rulePorts answers a tcp or udp rule's ports in the agent's form
// "80,443" or "8000-8010"; exactly one of ports and port_range is needed.
func rulePorts(r *models.SecurityGroupRule) (string, error) {
	pr, list := r.GetPortRange(), r.GetPorts()
	switch {
	case pr != nil && len(list) > 0:
		return "", fmt.Errorf("ports: ports and port_range are both set")
	case pr != nil:
		if pr.GetStart() < 1 || pr.GetEnd() > 65535 || pr.GetStart() > pr.GetEnd() {
			return "", fmt.Errorf("port_range %d-%d: need 1 <= start <= end <= 65535", pr.GetStart(), pr.GetEnd())
		}
		return fmt.Sprintf("%d-%d", pr.GetStart(), pr.GetEnd()), nil
	case len(list) > 0:
		s := make([]string, len(list))
		for i, p := range list {
			if p < 1 || p > 65535 {
				return "", fmt.Errorf("ports[%d] %d: out of range 1-65535", i, p)
			}
			s[i] = strconv.FormatUint(uint64(p), 10)
		}
		return strings.Join(s, ","), nil
	}
	return "", fmt.Errorf("ports: protocol %s needs ports or port_range (none would open every port)", r.GetProtocol())
}

func icmpString(i *models.ICMPInfo) string {
	if i == nil {
		return "(none)"
	}
	return fmt.Sprintf("type %d code %d", i.GetType(), i.GetCode())
}
