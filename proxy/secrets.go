package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// certSecret is a loaded tls_certificate secret.
type certSecret struct {
	version string
	cert    *tls.Certificate // Leaf is set
}

// validationSecret is a loaded validation_context secret.
type validationSecret struct {
	version string
	pool    *x509.CertPool
	cas     []*x509.Certificate
	sans    []sanMatcher // empty: any certificate the CA signed
}

type sanMatcher struct {
	sanType string // "DNS" or "URI"
	exact   string
}

var sanTypes = map[string]bool{"DNS": true, "URI": true}

func loadCertSecret(ref SecretRef) (*certSecret, error) {
	d, version, s, err := readSecret(ref)
	if err != nil {
		return nil, err
	}
	tc := s.object("tls_certificate", true)
	var chain, key string
	if tc != nil {
		chain = inlineString(tc.object("certificate_chain", true))
		key = inlineString(tc.object("private_key", true))
		tc.done()
	}
	s.done()
	if d.err != nil {
		return nil, d.err
	}
	cert, err := tls.X509KeyPair([]byte(chain), []byte(key))
	if err != nil {
		return nil, fmt.Errorf("%s: secret %s: %w", ref.Path, ref.Name, err)
	}
	return &certSecret{version: version, cert: &cert}, nil
}

func loadValidationSecret(ref SecretRef) (*validationSecret, error) {
	d, version, s, err := readSecret(ref)
	if err != nil {
		return nil, err
	}
	v := &validationSecret{version: version, pool: x509.NewCertPool()}
	vc := s.object("validation_context", true)
	var caPEM string
	if vc != nil {
		caPEM = inlineString(vc.object("trusted_ca", true))
		for _, m := range vc.list("match_typed_subject_alt_names", false) {
			t := m.str("san_type", true)
			if !sanTypes[t] && d.err == nil {
				d.failf(m.at("san_type"), "unsupported SAN type %q (cellproxy matches DNS and URI)", t)
			}
			sm := m.object("matcher", true)
			var exact string
			if sm != nil {
				sm.only("exact", "ignore_case")
				exact = sm.str("exact", true)
				if sm.has("ignore_case") && sm.boolean("ignore_case") {
					d.failf(sm.at("ignore_case"), "cellproxy matches SANs exactly")
				}
				sm.done()
			}
			m.done()
			v.sans = append(v.sans, sanMatcher{sanType: t, exact: exact})
		}
		vc.done()
	}
	s.done()
	if d.err != nil {
		return nil, d.err
	}
	cas, err := parseCerts([]byte(caPEM))
	if err != nil {
		return nil, fmt.Errorf("%s: secret %s: trusted_ca: %w", ref.Path, ref.Name, err)
	}
	for _, ca := range cas {
		v.pool.AddCert(ca)
	}
	v.cas = cas
	return v, nil
}

// readSecret reads a file-based SDS file (a DiscoveryResponse) and returns
// the one resource in it, which must be the Secret the bootstrap names.
func readSecret(ref SecretRef) (*decoder, string, *object, error) {
	data, err := os.ReadFile(ref.Path)
	if err != nil {
		return nil, "", nil, fmt.Errorf("read secret %s: %w", ref.Name, err)
	}
	doc, err := decodeYAML(data)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s: %w", ref.Path, err)
	}
	d := &decoder{file: ref.Path}
	top := d.root(doc)
	version := top.str("version_info", false)
	if t := top.str("type_url", false); t != "" && t != typeSecret {
		d.failf(top.at("type_url"), "unsupported %q (expected %s)", t, typeSecret)
	}
	resources := top.list("resources", true)
	top.done()
	if len(resources) != 1 && d.err == nil {
		d.failf(top.at("resources"), "cellproxy expects exactly one secret per file, got %d", len(resources))
	}
	if d.err != nil {
		return nil, "", nil, d.err
	}
	s := resources[0]
	if t := s.str("@type", true); t != typeSecret && d.err == nil {
		d.failf(s.at("@type"), "unsupported type %q (expected %s)", t, typeSecret)
	}
	if n := s.str("name", true); n != ref.Name && d.err == nil {
		d.failf(s.at("name"), "secret %q, but the bootstrap asks for %q", n, ref.Name)
	}
	if d.err != nil {
		return nil, "", nil, d.err
	}
	return d, version, s, nil
}

// inlineString reads a DataSource; cellproxy supports inline_string only
// (a filename would need watching of its own).
func inlineString(o *object) string {
	if o == nil {
		return ""
	}
	o.only("inline_string")
	s := o.str("inline_string", true)
	return s
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

// matches reports whether a client certificate passes the SAN matchers:
// any matcher equal to any SAN of its type, as Envoy does.
func (v *validationSecret) matches(c *x509.Certificate) bool {
	if len(v.sans) == 0 {
		return true
	}
	for _, m := range v.sans {
		switch m.sanType {
		case "DNS":
			for _, n := range c.DNSNames {
				if n == m.exact {
					return true
				}
			}
		case "URI":
			for _, u := range c.URIs {
				if u.String() == m.exact {
					return true
				}
			}
		}
	}
	return false
}
