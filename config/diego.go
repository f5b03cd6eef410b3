package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
)

// Diego turns the agent into a Diego cell: it holds a Locket presence,
// serves the rep API to the auctioneer and BBS, and runs the LRPs placed
// on it. Without the section the agent is a standalone /v1 agent.
type Diego struct {
	BBS    DiegoBBS    `json:"bbs"`
	Locket DiegoLocket `json:"locket"`
	Rep    DiegoRep    `json:"rep"`
	// Stacks maps a Diego stack (rootfs preloaded:STACK) to the name of a
	// preloaded_rootfs entry.
	Stacks                map[string]string `json:"stacks"`
	PlacementTags         []string          `json:"placement_tags"`
	OptionalPlacementTags []string          `json:"optional_placement_tags"`
	// EmitRoutes registers desired LRPs' cf-router routes from the cell;
	// default true. Turn it off where the platform's route-emitter does it.
	EmitRoutes *bool `json:"emit_routes,omitempty"`
}

// DiegoBBS is BBS's https URL and the mutual TLS files to reach it.
type DiegoBBS struct {
	URL    string `json:"url"`
	CACert string `json:"ca_cert"`
	Cert   string `json:"cert"`
	Key    string `json:"key"`
}

// DiegoLocket is Locket's host:port and the mutual TLS files to reach it.
type DiegoLocket struct {
	Address string `json:"address"`
	CACert  string `json:"ca_cert"`
	Cert    string `json:"cert"`
	Key     string `json:"key"`
}

// DiegoRep is where the rep API listens and the URL the cell announces.
// With tls set the API requires client certificates signed by client_ca.
type DiegoRep struct {
	Listen string `json:"listen"`
	URL    string `json:"url"`
	TLS    TLS    `json:"tls"`
}

// RoutesEmitted answers emit_routes with its default.
func (d *Diego) RoutesEmitted() bool { return d.EmitRoutes == nil || *d.EmitRoutes }

// validate lists every problem of the diego section.
func (d *Diego) validate(c Config) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	files := func(prefix string, paths map[string]string) {
		for key, path := range paths {
			if path == "" {
				bad("%s.%s is required", prefix, key)
			} else if _, err := os.Stat(path); err != nil {
				bad("%s.%s: %v", prefix, key, err)
			}
		}
	}
	if u, err := url.Parse(d.BBS.URL); err != nil || u.Scheme != "https" || u.Host == "" {
		bad("diego.bbs.url %q: must be an https URL (BBS requires mutual TLS)", d.BBS.URL)
	}
	files("diego.bbs", map[string]string{"ca_cert": d.BBS.CACert, "cert": d.BBS.Cert, "key": d.BBS.Key})
	if _, _, err := net.SplitHostPort(d.Locket.Address); err != nil {
		bad("diego.locket.address %q: %v", d.Locket.Address, err)
	}
	files("diego.locket", map[string]string{"ca_cert": d.Locket.CACert, "cert": d.Locket.Cert, "key": d.Locket.Key})
	if _, _, err := net.SplitHostPort(d.Rep.Listen); err != nil {
		bad("diego.rep.listen %q: %v", d.Rep.Listen, err)
	}
	tlsOn := d.Rep.TLS != (TLS{})
	if tlsOn {
		files("diego.rep.tls", map[string]string{"cert": d.Rep.TLS.Cert, "key": d.Rep.TLS.Key, "client_ca": d.Rep.TLS.ClientCA})
	}
	want := "http"
	if tlsOn {
		want = "https"
	}
	if u, err := url.Parse(d.Rep.URL); err != nil || u.Scheme != want || u.Host == "" {
		bad("diego.rep.url %q: must be an %s URL the control plane reaches diego.rep.listen at (%s because diego.rep.tls is %s)",
			d.Rep.URL, want, want, map[bool]string{true: "set", false: "not set"}[tlsOn])
	}
	if len(d.Stacks) == 0 {
		bad("diego.stacks must name at least one stack (stack -> preloaded_rootfs name)")
	}
	for stack, name := range d.Stacks {
		if !idPattern.MatchString(stack) {
			bad("diego.stacks: stack %q is not a valid name", stack)
		}
		if _, ok := c.PreloadedRootfs[name]; !ok {
			bad("diego.stacks.%s: %q is not a preloaded_rootfs name", stack, name)
		}
	}
	return errs
}
