package routeemitter_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cellagent/cellagent/routeemitter"
	"github.com/cellagent/cellagent/routeemitter/routetable"
)

// fuzzMappings packs mappings as the fuzzer's bytes: four big-endian
// uint16s each (container, host, container TLS, host TLS port).
func fuzzMappings(ports ...uint16) []byte {
	b := make([]byte, 0, 2*len(ports))
	for _, p := range ports {
		b = binary.BigEndian.AppendUint16(b, p)
	}
	return b
}

func decodeFuzzMappings(b []byte) []routeemitter.Mapping {
	var ms []routeemitter.Mapping
	for ; len(b) >= 8; b = b[8:] {
		ms = append(ms, routeemitter.Mapping{
			ContainerPort:    binary.BigEndian.Uint16(b[0:]),
			HostPort:         binary.BigEndian.Uint16(b[2:]),
			ContainerTLSPort: binary.BigEndian.Uint16(b[4:]),
			HostTLSPort:      binary.BigEndian.Uint16(b[6:]),
		})
	}
	return ms
}

// decodeFuzzRoutes reads one route per line, "PORT|hostname|hostname...";
// a port that does not parse is 0, a line without '|' has no hostnames.
func decodeFuzzRoutes(s string) []routeemitter.Route {
	var rs []routeemitter.Route
	for line := range strings.SplitSeq(s, "\n") {
		port, hosts, hasHosts := strings.Cut(line, "|")
		p, _ := strconv.ParseUint(port, 10, 16)
		r := routeemitter.Route{Port: uint16(p)}
		if hasHosts {
			r.Hostnames = strings.Split(hosts, "|")
		}
		rs = append(rs, r)
	}
	return rs
}

// FuzzBuildMessages builds registrations from fuzzed endpoints. Nothing may
// panic; when ValidateRoutes accepts the routes, every message must be one
// Gorouter takes (its JSON types, a usable address, valid uris).
func FuzzBuildMessages(f *testing.F) {
	f.Add("g1", "a1", 3, "10.0.0.5", "10.255.0.7", "z1",
		fuzzMappings(8080, 40001, 61001, 40002, 9090, 40003, 0, 0),
		"8080|app.example.com|app.example.com/api\n9090|admin.example.com", false)
	f.Add("g1", "a1", 0, "10.0.0.5", "10.255.0.7", "z1",
		fuzzMappings(8080, 40001, 61001, 40002), "8080|*.example.com/a/b", true)
	f.Add("g2", "", -1, "", "10.255.0.7", "", fuzzMappings(8080, 0, 0, 0), "8080|a.example.com\n7070|orphan.example.com", false)
	f.Add("g3", "a3", 1, "::1", "", "z1", fuzzMappings(8080, 40001, 0, 0), "8080|-bad.example.com|a..b|a.example.com//x", false)
	f.Add("g4", "a4", 2, "10.0.0.5", "", "z1", fuzzMappings(8080, 40001, 0, 0), "8080\n8080|", false)

	now := time.Unix(1700000000, 123)
	f.Fuzz(func(t *testing.T, guid, logGUID string, index int, externalIP, internalIP, az string,
		mappings []byte, routes string, instanceAddress bool) {
		ep := routeemitter.Endpoint{
			GUID: guid, LogGUID: logGUID, Index: index, ExternalIP: externalIP, InternalIP: internalIP,
			Mappings: decodeFuzzMappings(mappings), Routes: decodeFuzzRoutes(routes),
		}
		for _, r := range ep.Routes {
			for _, h := range r.Hostnames {
				checkHostname(t, h)
			}
		}
		var ports []uint16
		for _, m := range ep.Mappings {
			ports = append(ports, m.ContainerPort)
		}
		msgs := routeemitter.BuildMessages(ep, az, instanceAddress, now)
		if routeemitter.ValidateRoutes(ep.Routes, ports) != nil {
			return
		}
		for _, m := range msgs {
			checkGorouterMessage(t, ep, m)
		}
	})
}

// checkHostname holds ValidateHostname to properties of its own: what it
// accepts is printable ASCII without spaces, '?' or '#', and not too long.
func checkHostname(t *testing.T, h string) {
	t.Helper()
	if routeemitter.ValidateHostname(h) != nil {
		return
	}
	host, path, _ := strings.Cut(h, "/")
	if host == "" || len(host) > 253 || len(path) >= routeemitter.MaxPathLength {
		t.Fatalf("ValidateHostname accepted %q (host %d bytes, path %d bytes)", h, len(host), len(path)+1)
	}
	for _, c := range []byte(h) {
		if c <= ' ' || c > '~' || c == '?' || c == '#' {
			t.Fatalf("ValidateHostname accepted %q with character %q", h, c)
		}
	}
	if strings.Contains(host, "..") || strings.Contains(path, "//") || strings.HasSuffix(h, "/") {
		t.Fatalf("ValidateHostname accepted %q with an empty label or segment", h)
	}
}

func checkGorouterMessage(t *testing.T, ep routeemitter.Endpoint, m routetable.RegistryMessage) {
	t.Helper()
	if m.Host == "" || m.Port == 0 || len(m.URIs) == 0 {
		t.Fatalf("message without a usable address or uris: %+v", m)
	}
	for _, uri := range m.URIs {
		if err := routeemitter.ValidateHostname(uri); err != nil {
			t.Fatalf("valid routes gave uri %q: %v", uri, err)
		}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("marshal %+v: %v", m, err)
	}
	var g gorouterMessage
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&g); err != nil {
		t.Fatalf("Gorouter would drop %s: %v", raw, err)
	}
	if g.Port != m.Port || g.TLSPort != m.TLSPort || !slices.Equal(g.Uris, m.URIs) {
		t.Fatalf("Gorouter reads port %d, tls_port %d, uris %q from %s", g.Port, g.TLSPort, g.Uris, raw)
	}
	if g.PrivateInstanceIndex != strconv.Itoa(ep.Index) {
		t.Fatalf("Gorouter reads private_instance_index %q, want %d", g.PrivateInstanceIndex, ep.Index)
	}
	matched := slices.ContainsFunc(ep.Routes, func(r routeemitter.Route) bool {
		return slices.Equal(r.Hostnames, m.URIs) && slices.ContainsFunc(ep.Mappings, func(mp routeemitter.Mapping) bool {
			if mp.ContainerPort != r.Port {
				return false
			}
			if m.Host == ep.InternalIP && mp.ContainerPort == m.Port && mp.ContainerTLSPort == m.TLSPort {
				return true
			}
			return m.Host == ep.ExternalIP && mp.HostPort == m.Port && mp.HostTLSPort == m.TLSPort
		})
	})
	if !matched {
		t.Fatalf("message %+v matches no route and mapping of %+v", m, ep)
	}
}
