package network

import (
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/executor/netrules"
)

// DefaultEgress is network.egress.default of a fresh install: the public
// internet, and nothing private. It is Cloud Foundry's "public_networks"
// security group with carrier-grade NAT (100.64.0.0/10) left out too; the
// loopback, link-local and bridge addresses are refused whatever the rules
// say.
func DefaultEgress() []executor.EgressRule {
	return []executor.EgressRule{{Protocol: netrules.ProtoAll, Destinations: []string{
		"0.0.0.0-9.255.255.255",
		"11.0.0.0-100.63.255.255",
		"100.128.0.0-126.255.255.255",
		"128.0.0.0-169.253.255.255",
		"169.255.0.0-172.15.255.255",
		"172.32.0.0-192.167.255.255",
		"192.169.0.0-255.255.255.255",
	}}}
}

// alwaysDenied are destinations no egress rule opens: the host's loopback
// (reachable from the bridge because of route_localnet) and link-local,
// where clouds serve the VM's credentials at 169.254.169.254. The bridge
// address is added per network.
var alwaysDenied = []string{"127.0.0.0/8", "169.254.0.0/16"}
