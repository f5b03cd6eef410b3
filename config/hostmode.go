package config

import (
	"net/url"
	"strings"
)

// hostModeErrors: in network.mode host every app shares the cell's network
// namespace, so it reaches everything the agent serves on loopback: the
// admin API (plain HTTP on 127.0.0.1 drives every container as root) and
// the embedded NATS (route registration). Host mode is refused unless what
// an app can reach authenticates it (the admin API off loopback, which
// requires mutual TLS, and a NATS that requires credentials), or the
// operator declares the cell single-tenant (network.host_single_tenant):
// every app is then trusted like the operator.
func (c Config) hostModeErrors() []string {
	if c.Network.Mode != "host" || c.Network.HostSingleTenant {
		return nil
	}
	var errs []string
	if IsLoopback(c.Listen.Admin) {
		errs = append(errs, "network.mode host: listen.admin "+c.Listen.Admin+" is plain HTTP on loopback, which every app in host mode reaches; "+
			"bind it off loopback with mutual TLS (listen.tls), or set network.host_single_tenant: true if every app on this cell is trusted")
	}
	if len(c.NATS.URLs) > 0 && !natsAuthenticates(c) {
		errs = append(errs, "network.mode host: nats.urls carry no user and nats.tls no client certificate, so the NATS an app reaches may accept anyone; "+
			"use a NATS that requires credentials, or set network.host_single_tenant: true")
	}
	return errs
}

// natsAuthenticates says whether the agent presents credentials to an
// external NATS: a user in every URL, a TLS client certificate, a
// credentials file or an nkey seed.
func natsAuthenticates(c Config) bool {
	if c.NATS.TLS.Cert != "" || c.NATS.CredentialsFile != "" || c.NATS.NKeySeedFile != "" {
		return true
	}
	for _, s := range c.NATS.URLs {
		u, err := url.Parse(s)
		if err != nil || u.User == nil || strings.TrimSpace(u.User.Username()) == "" {
			return false
		}
	}
	return true
}
