package routeintegrity_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cellagent/cellagent/routeemitter/routetable"
)

// maxAttempts is Gorouter's backends.max_attempts in CF deployments.
const maxAttempts = 3

// testRouter keeps Gorouter's contract as REFERENCE.md states it, and
// nothing more: endpoints per URI keyed by host:(tls_port or port); a
// register with the same key replaces, an unregister removes exactly that
// key; a request goes to one endpoint over TLS with RootCAs = the identity CA
// and ServerName = server_cert_domain_san; a failed verification prunes the
// endpoint and the request is retried on another, up to maxAttempts.
type testRouter struct {
	roots *x509.CertPool
	subs  []*nats.Subscription

	mu sync.Mutex
	// guarded by mu:
	pools            map[string]map[string]routetable.RegistryMessage // uri -> address -> registration
	next             int                                              // round-robin position
	ignoreUnregister bool                                             // drop router.unregister, as a lost message would be
	ignored          []routetable.RegistryMessage                     // unregisters dropped so
	pruned           []string                                         // "address san: reason"
}

// served is what answered a request routed through the testRouter.
type served struct {
	Endpoint routetable.RegistryMessage
	Body     string
}

// newTestRouter subscribes on nc; caPEMs are the trusted CAs (Gorouter's
// ca_certs), one per cell identity CA.
func newTestRouter(nc *nats.Conn, caPEMs ...[]byte) (*testRouter, error) {
	roots := x509.NewCertPool()
	for _, pem := range caPEMs {
		if !roots.AppendCertsFromPEM(pem) {
			return nil, errors.New("no CA certificate in PEM")
		}
	}
	r := &testRouter{roots: roots, pools: map[string]map[string]routetable.RegistryMessage{}}
	for subject, handle := range map[string]func(routetable.RegistryMessage){
		routetable.SubjectRegister: r.register, routetable.SubjectUnregister: r.unregister,
	} {
		sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
			var msg routetable.RegistryMessage
			if json.Unmarshal(m.Data, &msg) == nil { // Gorouter drops what it cannot decode
				handle(msg)
			}
		})
		if err != nil {
			return nil, err
		}
		r.subs = append(r.subs, sub)
	}
	return r, nc.Flush()
}

func (r *testRouter) close() {
	for _, s := range r.subs {
		_ = s.Unsubscribe()
	}
}

func (r *testRouter) register(m routetable.RegistryMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, uri := range m.URIs {
		if r.pools[uri] == nil {
			r.pools[uri] = map[string]routetable.RegistryMessage{}
		}
		r.pools[uri][m.Address()] = m
	}
}

func (r *testRouter) unregister(m routetable.RegistryMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ignoreUnregister {
		r.ignored = append(r.ignored, m)
		return
	}
	for _, uri := range m.URIs {
		delete(r.pools[uri], m.Address())
	}
}

// loseUnregisters makes the router drop every router.unregister from now on.
func (r *testRouter) loseUnregisters() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ignoreUnregister = true
}

func (r *testRouter) ignoredUnregisters() []routetable.RegistryMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ignored)
}

// endpoints answers uri's endpoints, ordered by address.
func (r *testRouter) endpoints(uri string) []routetable.RegistryMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	pool := r.pools[uri]
	var out []routetable.RegistryMessage
	for _, addr := range slices.Sorted(maps.Keys(pool)) {
		out = append(out, pool[addr])
	}
	return out
}

func (r *testRouter) prunedLog() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pruned)
}

// get routes GET / for uri: round-robin over its endpoints, pruning an
// endpoint whose certificate fails verification and retrying.
func (r *testRouter) get(uri string) (served, error) {
	var errs []error
	for range maxAttempts {
		ep, ok := r.pick(uri)
		if !ok {
			errs = append(errs, fmt.Errorf("no endpoints for %s", uri))
			break
		}
		body, err := r.roundTrip(uri, ep)
		if err == nil {
			return served{Endpoint: ep, Body: body}, nil
		}
		errs = append(errs, err)
		if verr := (*tls.CertificateVerificationError)(nil); errors.As(err, &verr) {
			r.prune(uri, ep, verr)
		}
	}
	return served{}, errors.Join(errs...)
}

func (r *testRouter) pick(uri string) (routetable.RegistryMessage, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pool := r.pools[uri]
	if len(pool) == 0 {
		return routetable.RegistryMessage{}, false
	}
	addrs := slices.Sorted(maps.Keys(pool))
	r.next++
	return pool[addrs[r.next%len(addrs)]], true
}

func (r *testRouter) prune(uri string, ep routetable.RegistryMessage, reason error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.pools[uri][ep.Address()]; ok && cur.PrivateInstanceID == ep.PrivateInstanceID {
		delete(r.pools[uri], ep.Address())
	}
	r.pruned = append(r.pruned, fmt.Sprintf("%s %s: %v", ep.Address(), ep.ServerCertDomainSAN, reason))
}

// roundTrip sends one request to ep over a verified TLS connection; no byte
// of the request leaves before the handshake has verified the identity.
func (r *testRouter) roundTrip(uri string, ep routetable.RegistryMessage) (string, error) {
	if !ep.TLS() {
		return "", fmt.Errorf("%s: not a TLS endpoint", ep.Address())
	}
	dialer := &net.Dialer{Timeout: 3 * time.Second}
	conn, err := tls.DialWithDialer(dialer, "tcp", ep.Address(),
		&tls.Config{RootCAs: r.roots, ServerName: ep.ServerCertDomainSAN})
	if err != nil {
		return "", fmt.Errorf("%s: %w", ep.Address(), err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req, err := http.NewRequest(http.MethodGet, "http://"+uri+"/", nil)
	if err != nil {
		return "", err
	}
	req.Close = true
	if err := req.Write(conn); err != nil {
		return "", fmt.Errorf("%s: %w", ep.Address(), err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return "", fmt.Errorf("%s: %w", ep.Address(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("%s: %w", ep.Address(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s: %s", ep.Address(), resp.Status, body)
	}
	return string(body), nil
}
