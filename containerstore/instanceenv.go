package containerstore

import (
	"encoding/json"
	"strconv"
)

// instanceEnv is the environment Diego gives every LRP instance, in Diego's
// formats, so that apps and buildpacks written for Diego cells read the same
// values here:
//
//   - INSTANCE_GUID, INSTANCE_INDEX, CF_INSTANCE_GUID, CF_INSTANCE_INDEX: the
//     rep's (rep conversion_helpers.go NewRunRequestFromDesiredLRP); the
//     instance guid is the container guid here.
//   - CF_INSTANCE_IP, CF_INSTANCE_INTERNAL_IP, CF_INSTANCE_INTERNAL_IPV6 (only
//     when the container has one), CF_INSTANCE_PORT and CF_INSTANCE_ADDR
//     (ip:port; both only when the first port has a host port, both empty
//     when there are no ports), CF_INSTANCE_PORTS (JSON; "external" omitted
//     when there is no host port, the TLS proxy ports when the proxy serves
//     that port): the executor's run step (depot/steps/run_step.go
//     networkingEnvVars).
//
// PORT (the first container port) is not Diego's but Cloud Controller's,
// which puts it in the desired LRP's env; with no Cloud Controller in front
// of a cell the agent sets it.
//
// The app's own env comes after this (containerd's WithEnv keeps the last
// value of a name), so an app can still override any of these.
// c2cAppPort and c2cTLSPort are Diego's container-to-container listener
// (the proxy's, see proxyconfig.C2CMapping): app port 8080 on 61443.
const (
	c2cAppPort = 8080
	c2cTLSPort = 61443
)

func instanceEnv(inst *Instance) []string {
	index := strconv.Itoa(inst.Request.Index)
	env := []string{
		"INSTANCE_GUID=" + inst.GUID,
		"INSTANCE_INDEX=" + index,
		"CF_INSTANCE_GUID=" + inst.GUID,
		"CF_INSTANCE_INDEX=" + index,
		"CF_INSTANCE_IP=" + inst.ExternalIP,
		"CF_INSTANCE_INTERNAL_IP=" + inst.InternalIP,
	}
	if inst.InternalIPv6 != "" {
		env = append(env, "CF_INSTANCE_INTERNAL_IPV6="+inst.InternalIPv6)
	}
	if len(inst.Ports) == 0 {
		return append(env, "CF_INSTANCE_PORT=", "CF_INSTANCE_ADDR=", "CF_INSTANCE_PORTS=[]")
	}
	first := inst.Ports[0]
	if first.HostPort > 0 {
		port := strconv.Itoa(int(first.HostPort))
		env = append(env, "CF_INSTANCE_PORT="+port, "CF_INSTANCE_ADDR="+inst.ExternalIP+":"+port)
	}
	// Diego's field names and omissions (run_step.go cfPortMapping).
	type port struct {
		External         uint16 `json:"external,omitempty"`
		Internal         uint16 `json:"internal"`
		ExternalTLSProxy uint16 `json:"external_tls_proxy,omitempty"`
		InternalTLSProxy uint16 `json:"internal_tls_proxy,omitempty"`
	}
	ports := make([]port, 0, len(inst.Ports)+1)
	for _, p := range inst.Ports {
		ports = append(ports, port{p.HostPort, p.ContainerPort, p.HostTLSProxyPort, p.ContainerTLSProxyPort})
		if p.ContainerPort == c2cAppPort && p.ContainerTLSProxyPort != 0 {
			// Diego lists the proxy's c2c listener as a second mapping of
			// 8080 (storenode portMappingFromContainerInfo), without host
			// TLS port: it is reachable from containers only.
			ports = append(ports, port{p.HostPort, p.ContainerPort, 0, c2cTLSPort})
		}
	}
	b, _ := json.Marshal(ports)
	return append(env, "CF_INSTANCE_PORTS="+string(b), "PORT="+strconv.Itoa(int(first.ContainerPort)))
}
