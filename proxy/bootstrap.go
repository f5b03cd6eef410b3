package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Spec is what cellproxy takes from an Envoy bootstrap.
type Spec struct {
	AdminAddr string
	Listeners []ListenerSpec
}

// ListenerSpec is one TLS listener and the app address behind it.
type ListenerSpec struct {
	Name           string
	Addr           string // host:port to listen on
	Upstream       string // host:port of the cluster's one endpoint
	ConnectTimeout time.Duration
	MinVersion     uint16
	MaxVersion     uint16   // 0: the newest Go supports
	CipherSuites   []uint16 // TLS 1.2 suites; nil: Go's defaults
	Cert           SecretRef
	Validation     *SecretRef // client certificate validation; nil: none
	// RequireClientCert demands a certificate; with Validation but without
	// this, a certificate is verified when the client offers one.
	RequireClientCert bool
	// NextProtos is the ALPN offer (alpn_protocols, each entry split on
	// commas as Envoy does); nil: no ALPN.
	NextProtos []string
}

// SecretRef names a secret in a file-based SDS file.
type SecretRef struct {
	Name string
	Path string
}

const (
	typeTCPProxy   = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	typeDownstream = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
	typeSecret     = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
	filterTCPProxy = "envoy.filters.network.tcp_proxy"
	transportTLS   = "envoy.transport_sockets.tls"

	// Envoy's default cluster connect_timeout.
	defaultConnectTimeout = 5 * time.Second
)

// ciphers maps the BoringSSL names Envoy takes to Go's suites.
var ciphers = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

var tlsVersions = map[string]uint16{
	"TLS_AUTO": 0,
	"TLSv1_2":  tls.VersionTLS12,
	"TLSv1_3":  tls.VersionTLS13,
}

// LoadBootstrap reads and checks an Envoy bootstrap file.
func LoadBootstrap(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read bootstrap: %w", err)
	}
	return ParseBootstrap(path, data)
}

// ParseBootstrap checks a bootstrap; name prefixes its error messages.
func ParseBootstrap(name string, data []byte) (*Spec, error) {
	doc, err := decodeYAML(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	d := &decoder{file: name}
	top := d.root(doc)

	if n := top.object("node", false); n != nil {
		n.str("id", false) // informational only
		n.str("cluster", false)
		n.done()
	}
	// stats_config: Diego's bootstrap turns every stat off (reject_all);
	// cellproxy keeps none, so that is the only setting it accepts.
	if sc := top.object("stats_config", false); sc != nil {
		if m := sc.object("stats_matcher", true); m != nil {
			if !m.boolean("reject_all") && m.d.err == nil {
				m.d.failf(m.at("reject_all"), "cellproxy keeps no stats; only reject_all: true is accepted")
			}
			m.done()
		}
		sc.done()
	}
	spec := &Spec{}
	spec.AdminAddr = socketAddress(top.object("admin", true).objectDone("address"))

	sr := top.object("static_resources", true)
	if sr == nil {
		// Missing or null: object recorded the error; the list methods
		// below would dereference nil.
		return nil, d.err
	}
	clusters := map[string]cluster{}
	for _, c := range sr.list("clusters", false) {
		name, cl := parseCluster(c)
		if _, dup := clusters[name]; dup {
			d.failf(c.at("name"), "cluster %q defined twice", name)
		}
		clusters[name] = cl
	}
	ls := sr.list("listeners", false)
	for _, l := range ls {
		spec.Listeners = append(spec.Listeners, parseListener(l, clusters))
	}
	sr.done()
	top.done()
	if d.err != nil {
		return nil, d.err
	}
	seen := map[string]string{spec.AdminAddr: "admin"}
	for _, l := range spec.Listeners {
		if prev, ok := seen[l.Addr]; ok {
			return nil, fmt.Errorf("%s: listener %s: address %s already used by %s", name, l.Name, l.Addr, prev)
		}
		seen[l.Addr] = "listener " + l.Name
	}
	return spec, nil
}

// objectDone reads a nested object that has exactly one field, socket_address.
func (o *object) objectDone(key string) *object {
	if o == nil {
		return nil
	}
	a := o.object(key, true)
	o.done()
	return a
}

type cluster struct {
	upstream       string
	connectTimeout time.Duration
}

func parseCluster(c *object) (string, cluster) {
	name := c.str("name", true)
	if t := c.str("type", false); t != "" && t != "STATIC" {
		c.d.failf(c.at("type"), "unsupported cluster type %q (cellproxy supports STATIC)", t)
	}
	cl := cluster{connectTimeout: defaultConnectTimeout}
	if c.has("connect_timeout") {
		cl.connectTimeout = duration(c, "connect_timeout")
	}
	if cb := c.object("circuit_breakers", false); cb != nil {
		for _, t := range cb.list("thresholds", false) {
			for _, k := range []string{"max_connections", "max_pending_requests", "max_requests"} {
				if t.has(k) && t.uint(k, false, math.MaxUint32) != math.MaxUint32 {
					t.d.failf(t.at(k), "cellproxy enforces no connection limits; only %d (unlimited) is accepted", uint32(math.MaxUint32))
				}
			}
			t.done()
		}
		cb.done()
	}
	la := c.object("load_assignment", true)
	if la != nil {
		if cn := la.str("cluster_name", false); cn != "" && cn != name {
			c.d.failf(la.at("cluster_name"), "%q differs from the cluster's name %q", cn, name)
		}
		eps := la.list("endpoints", true)
		if len(eps) != 1 && la.d.err == nil {
			la.d.failf(la.at("endpoints"), "cellproxy supports exactly one endpoint per cluster, got %d localities", len(eps))
		}
		for _, ep := range eps {
			lbs := ep.list("lb_endpoints", true)
			if len(lbs) != 1 && ep.d.err == nil {
				ep.d.failf(ep.at("lb_endpoints"), "cellproxy supports exactly one endpoint per cluster, got %d", len(lbs))
			}
			for _, lb := range lbs {
				cl.upstream = socketAddress(lb.objectDone("endpoint").objectDone("address"))
				lb.done()
			}
			ep.done()
		}
		la.done()
	}
	c.done()
	return name, cl
}

func parseListener(l *object, clusters map[string]cluster) ListenerSpec {
	spec := ListenerSpec{Name: l.str("name", true)}
	spec.Addr = socketAddress(l.object("address", true))
	chains := l.list("filter_chains", true)
	if len(chains) != 1 && l.d.err == nil {
		l.d.failf(l.at("filter_chains"), "cellproxy supports exactly one filter chain per listener, got %d", len(chains))
	}
	for _, fc := range chains {
		filters := fc.list("filters", true)
		if len(filters) != 1 && fc.d.err == nil {
			fc.d.failf(fc.at("filters"), "cellproxy supports exactly one filter (%s), got %d", filterTCPProxy, len(filters))
		}
		for _, f := range filters {
			if n := f.str("name", true); n != filterTCPProxy && f.d.err == nil {
				f.d.failf(f.at("name"), "unsupported filter %q (cellproxy supports only %s)", n, filterTCPProxy)
			}
			tc := typedConfig(f, typeTCPProxy)
			tc.str("stat_prefix", true)
			cname := tc.str("cluster", true)
			if cl, ok := clusters[cname]; ok {
				spec.Upstream, spec.ConnectTimeout = cl.upstream, cl.connectTimeout
			} else if tc.d.err == nil {
				tc.d.failf(tc.at("cluster"), "no cluster named %q", cname)
			}
			tc.done()
			f.done()
		}
		if !fc.has("transport_socket") && fc.d.err == nil {
			fc.d.failf(fc.at("transport_socket"), "missing: cellproxy serves TLS only (%s)", transportTLS)
		}
		parseTransportSocket(fc.object("transport_socket", true), &spec)
		fc.done()
	}
	l.done()
	return spec
}

func parseTransportSocket(ts *object, spec *ListenerSpec) {
	if ts == nil {
		return
	}
	if n := ts.str("name", true); n != transportTLS && ts.d.err == nil {
		ts.d.failf(ts.at("name"), "unsupported transport socket %q (cellproxy supports only %s)", n, transportTLS)
	}
	tc := typedConfig(ts, typeDownstream)
	spec.RequireClientCert = tc.boolean("require_client_certificate")
	common := tc.object("common_tls_context", true)
	if common != nil {
		spec.MinVersion = tls.VersionTLS12
		if p := common.object("tls_params", false); p != nil {
			if v := tlsVersion(p, "tls_minimum_protocol_version"); v != 0 {
				spec.MinVersion = v
			}
			spec.MaxVersion = tlsVersion(p, "tls_maximum_protocol_version")
			if spec.MaxVersion != 0 && spec.MaxVersion < spec.MinVersion {
				p.d.failf(p.at("tls_maximum_protocol_version"), "maximum TLS version is below the minimum: no handshake could succeed")
			}
			for i, name := range p.strings("cipher_suites") {
				id, ok := ciphers[name]
				if !ok {
					p.d.failf(fmt.Sprintf("%s[%d]", p.at("cipher_suites"), i), "unsupported cipher %q (cellproxy supports %s)", name, strings.Join(sortedKeys(ciphers), ", "))
				}
				spec.CipherSuites = append(spec.CipherSuites, id)
			}
			p.done()
		}
		certs := common.list("tls_certificate_sds_secret_configs", false)
		if len(certs) != 1 && common.d.err == nil {
			common.d.failf(common.at("tls_certificate_sds_secret_configs"), "cellproxy needs exactly one certificate from SDS, got %d", len(certs))
		}
		for _, c := range certs {
			spec.Cert = sdsRef(c)
		}
		if v := common.object("validation_context_sds_secret_config", false); v != nil {
			ref := sdsRef(v)
			spec.Validation = &ref
		}
		for i, entry := range common.strings("alpn_protocols") {
			for proto := range strings.SplitSeq(entry, ",") {
				if proto == "" || len(proto) > 255 {
					common.d.failf(fmt.Sprintf("%s[%d]", common.at("alpn_protocols"), i), "empty or over-long ALPN protocol in %q", entry)
					continue
				}
				spec.NextProtos = append(spec.NextProtos, proto)
			}
		}
		common.done()
	}
	if spec.RequireClientCert && spec.Validation == nil && tc.d.err == nil {
		tc.d.failf(tc.at("require_client_certificate"), "true without validation_context_sds_secret_config: nothing to verify client certificates against")
	}
	tc.done()
	ts.done()
}

func sdsRef(o *object) SecretRef {
	ref := SecretRef{Name: o.str("name", true)}
	cs := o.object("sds_config", true)
	if cs != nil {
		if v := cs.str("resource_api_version", false); v != "" && v != "V3" {
			cs.d.failf(cs.at("resource_api_version"), "unsupported %q (cellproxy reads V3)", v)
		}
		if !cs.has("path_config_source") && cs.d.err == nil {
			cs.d.failf(cs.at("path_config_source"), "missing: cellproxy reads secrets from files only")
		}
		pcs := cs.object("path_config_source", true)
		if pcs != nil {
			ref.Path = pcs.str("path", true)
			// The directory watch is Envoy's reload trigger; cellproxy polls
			// the file itself, which sees the same renames.
			if wd := pcs.object("watched_directory", false); wd != nil {
				wd.str("path", true)
				wd.done()
			}
			pcs.done()
		}
		cs.done()
	}
	o.done()
	return ref
}

// typedConfig reads o.typed_config and checks its @type.
func typedConfig(o *object, want string) *object {
	tc := o.object("typed_config", true)
	if tc == nil {
		return o.d.asObject(o.at("typed_config"), map[string]any{})
	}
	if t := tc.str("@type", true); t != want && tc.d.err == nil {
		tc.d.failf(tc.at("@type"), "unsupported type %q (expected %s)", t, want)
	}
	return tc
}

func socketAddress(a *object) string {
	if a == nil {
		return ""
	}
	sa := a.object("socket_address", true)
	if sa == nil {
		return ""
	}
	host := sa.str("address", true)
	port := sa.uint("port_value", true, math.MaxUint16)
	if p := sa.str("protocol", false); p != "" && p != "TCP" {
		sa.d.failf(sa.at("protocol"), "unsupported protocol %q (cellproxy proxies TCP)", p)
	}
	if net.ParseIP(host) == nil && sa.d.err == nil {
		sa.d.failf(sa.at("address"), "%q is not an IP address", host)
	}
	sa.done()
	a.done()
	return net.JoinHostPort(host, strconv.FormatUint(port, 10))
}

func tlsVersion(o *object, key string) uint16 {
	s := o.str(key, false)
	if s == "" {
		return 0
	}
	v, ok := tlsVersions[s]
	if !ok {
		o.d.failf(o.at(key), "unsupported TLS version %q (cellproxy supports TLS_AUTO, TLSv1_2, TLSv1_3)", s)
	}
	return v
}

// duration parses a protobuf Duration in JSON form ("0.25s").
func duration(o *object, key string) time.Duration {
	s := o.str(key, true)
	if !strings.HasSuffix(s, "s") {
		o.d.failf(o.at(key), "expected a duration like \"0.25s\", got %q", s)
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		o.d.failf(o.at(key), "expected a duration like \"0.25s\", got %q", s)
	}
	return d
}

func decodeYAML(data []byte) (any, error) {
	if doc, ok := decodeJSONDocument(data); ok {
		return doc, nil
	}
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	var doc any
	if err := json.Unmarshal(j, &doc); err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	return doc, nil
}

// decodeJSONDocument decodes a YAML document that is one JSON object after
// comment lines, as the agent writes its bootstrap (proxyconfig), without
// the YAML parser (~1 ms of CPU per start while 20 started at once). ok is
// false for anything else, which the YAML path then reads or explains.
func decodeJSONDocument(data []byte) (doc any, ok bool) {
	rest := data
	for {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) == 0 || rest[0] != '#' {
			break
		}
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return nil, false
		}
		rest = rest[i+1:]
	}
	if len(rest) == 0 || rest[0] != '{' {
		return nil, false
	}
	var m map[string]any
	if err := json.Unmarshal(rest, &m); err != nil {
		return nil, false
	}
	return m, true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
