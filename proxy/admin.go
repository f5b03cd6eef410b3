package proxy

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// adminHandler serves the subset of Envoy's admin API the agent uses, and
// cellproxy's own /secrets and /secrets/reload.
func (p *Proxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		st := p.state.Load()
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		if st != stateLive {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte(stateNames[st] + "\n"))
	})
	mux.HandleFunc("GET /certs", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		_ = enc.Encode(p.certsReport())
	})
	mux.HandleFunc("GET /secrets", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, p.secretsReport(nil))
	})
	// cellproxy's own (Envoy has no such endpoint): the agent calls it once
	// after rewriting an SDS file, and the answer says whether the new
	// certificate is served, without waiting for the poll and without a
	// TLS handshake to find out.
	mux.HandleFunc("POST /secrets/reload", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, p.secretsReport(p.reload(p.logger.Session("admin-reload"))))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// SecretsReport is the body of GET /secrets and POST /secrets/reload: the
// certificate each listener gives new handshakes, and what the reload
// (POST only) failed to load.
type SecretsReport struct {
	Listeners []ListenerSecret `json:"listeners"`
	Errors    []string         `json:"errors,omitempty"`
}

// ListenerSecret is what one listener serves.
type ListenerSecret struct {
	// Listener is the Envoy listener's name, Secret the name of its SDS
	// certificate secret and Version that secret's version_info.
	Listener string `json:"listener"`
	Secret   string `json:"secret"`
	Version  string `json:"version"`
	// SerialNumber is the leaf's, lower-case hex of its bytes (as /certs).
	SerialNumber string `json:"serial_number"`
}

func (p *Proxy) secretsReport(errs []error) SecretsReport {
	r := SecretsReport{Listeners: make([]ListenerSecret, 0, len(p.listeners))}
	for _, l := range p.listeners {
		c := l.served.Load()
		r.Listeners = append(r.Listeners, ListenerSecret{Listener: l.spec.Name, Secret: l.spec.Cert.Name,
			Version: c.version, SerialNumber: serialHex(c.cert.Leaf)})
	}
	for _, err := range errs {
		r.Errors = append(r.Errors, err.Error())
	}
	return r
}

// CertsReport is the body of /certs, in Envoy's field names: one entry per
// listener, the leaf of the served chain and the trusted CAs.
type CertsReport struct {
	Certificates []ListenerCerts `json:"certificates"`
}

type ListenerCerts struct {
	CACert    []CertDetails `json:"ca_cert"`
	CertChain []CertDetails `json:"cert_chain"`
}

// CertDetails mirrors Envoy's CertificateDetails. SerialNumber is lower-case
// hex of the serial's bytes, as Envoy prints it.
type CertDetails struct {
	Path                string           `json:"path"`
	SerialNumber        string           `json:"serial_number"`
	SubjectAltNames     []SubjectAltName `json:"subject_alt_names"`
	DaysUntilExpiration string           `json:"days_until_expiration"`
	ValidFrom           string           `json:"valid_from"`
	ExpirationTime      string           `json:"expiration_time"`
}

type SubjectAltName struct {
	DNS       string `json:"dns,omitempty"`
	URI       string `json:"uri,omitempty"`
	IPAddress string `json:"ip_address,omitempty"`
}

func (p *Proxy) certsReport() CertsReport {
	now := p.clock.Now()
	r := CertsReport{Certificates: []ListenerCerts{}}
	for _, l := range p.listeners {
		lc := ListenerCerts{CACert: []CertDetails{}, CertChain: []CertDetails{}}
		lc.CertChain = append(lc.CertChain, details(l.cert.cert.Load().cert.Leaf, now))
		if l.val != nil {
			for _, ca := range l.val.val.Load().cas {
				lc.CACert = append(lc.CACert, details(ca, now))
			}
		}
		r.Certificates = append(r.Certificates, lc)
	}
	return r
}

func details(c *x509.Certificate, now time.Time) CertDetails {
	d := CertDetails{
		Path:            "<inline>",
		SerialNumber:    serialHex(c),
		SubjectAltNames: []SubjectAltName{},
		ValidFrom:       c.NotBefore.UTC().Format(time.RFC3339),
		ExpirationTime:  c.NotAfter.UTC().Format(time.RFC3339),
	}
	days := int64(0)
	if left := c.NotAfter.Sub(now); left > 0 {
		days = int64(left / (24 * time.Hour))
	}
	d.DaysUntilExpiration = strconv.FormatInt(days, 10)
	for _, n := range c.DNSNames {
		d.SubjectAltNames = append(d.SubjectAltNames, SubjectAltName{DNS: n})
	}
	for _, u := range c.URIs {
		d.SubjectAltNames = append(d.SubjectAltNames, SubjectAltName{URI: u.String()})
	}
	for _, ip := range c.IPAddresses {
		d.SubjectAltNames = append(d.SubjectAltNames, SubjectAltName{IPAddress: ip.String()})
	}
	return d
}

// serialHex prints a serial as Envoy does: lower-case hex of its bytes.
func serialHex(c *x509.Certificate) string {
	if c.SerialNumber.Sign() == 0 {
		return "00"
	}
	return hex.EncodeToString(c.SerialNumber.Bytes())
}
