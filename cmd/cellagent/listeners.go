package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"

	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"

	"github.com/cellagent/cellagent/config"
	"github.com/cellagent/cellagent/executor/httpapi"
)

// serverTLS loads the listeners' certificate and, when client_ca is set,
// requires client certificates signed by it.
func serverTLS(t config.TLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("listen.tls.cert/key (%s, %s): %w", t.Cert, t.Key, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCA != "" {
		b, err := os.ReadFile(t.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("listen.tls.client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("listen.tls.client_ca %s: no PEM certificate", t.ClientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// listeners are the API servers: the admin listener (plain on loopback,
// TLS elsewhere; the only one with pprof, when listen.pprof is set) and the
// optional secure listener for an orchestrator (mutual TLS).
func listeners(cfg config.Config, api http.Handler) (grouper.Members, error) {
	var members grouper.Members
	var adminRunner ifrit.Runner
	if config.IsLoopback(cfg.Listen.Admin) {
		adminRunner = newAPIServer(cfg.Listen.Admin, adminHandler(cfg, api), nil)
	} else {
		tc, err := serverTLS(cfg.Listen.TLS)
		if err != nil {
			return nil, err
		}
		adminRunner = newAPIServer(cfg.Listen.Admin, adminHandler(cfg, api), tc)
	}
	members = append(members, grouper.Member{Name: "api", Runner: adminRunner})
	if cfg.Listen.Secure != "" {
		tc, err := serverTLS(cfg.Listen.TLS)
		if err != nil {
			return nil, err
		}
		members = append(members, grouper.Member{Name: "api-secure", Runner: newAPIServer(cfg.Listen.Secure, api, tc)})
	}
	return members, nil
}

// adminHandler is the admin listener's handler: the API, pprof when
// listen.pprof is set, and on a plain loopback listener only requests for a
// loopback Host (DNS rebinding; the API itself refuses browser requests).
func adminHandler(cfg config.Config, api http.Handler) http.Handler {
	admin := http.NewServeMux()
	admin.Handle("/", api)
	if cfg.Listen.Pprof {
		admin.HandleFunc("/debug/pprof/", pprof.Index)
		admin.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		admin.HandleFunc("/debug/pprof/profile", pprof.Profile)
		admin.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		admin.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if config.IsLoopback(cfg.Listen.Admin) {
		return httpapi.LoopbackHostOnly(admin)
	}
	return admin
}
