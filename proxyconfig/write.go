package proxyconfig

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"

	"github.com/cellagent/cellagent/internal/atomicfile"
)

// FileMode is the mode of every generated file: the cert file holds the
// private key. The proxy reads them through its group: the directory is
// setgid to it (proxyhook), so no one else but root can.
const FileMode os.FileMode = 0o640

// Write writes every file a container's proxy needs, SDS files first (Envoy
// refuses a bootstrap whose SDS paths do not exist yet) and the bootstrap last.
func Write(hostDir string, cfg Config, mappings []Mapping, adminPort uint16, certPEM, keyPEM []byte, version string) error {
	if err := WriteCertAndKey(hostDir, certPEM, keyPEM, version); err != nil {
		return err
	}
	if cfg.RequireClientCerts {
		if err := WriteValidationContext(hostDir, cfg); err != nil {
			return err
		}
	}
	return WriteBootstrap(hostDir, cfg, mappings, adminPort)
}

// WriteBootstrap writes envoy.yaml into hostDir.
func WriteBootstrap(hostDir string, cfg Config, mappings []Mapping, adminPort uint16) error {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("write %s: %w", BootstrapFile, err)
	}
	if err := checkMappings(mappings, adminPort); err != nil {
		return fmt.Errorf("write %s: %w", BootstrapFile, err)
	}
	return writeJSON(hostDir, BootstrapFile, buildBootstrap(cfg, mappings, adminPort))
}

// WriteCertAndKey writes sds-id-cert-and-key.yaml: the chain (leaf first) and
// its key in one file, so one rename swaps both. The pair is checked first,
// for pairs that did not come from credmanager (a drain certificate, files
// an operator provides): a running cellproxy refuses a mismatched pair at
// its reload and keeps what it serves, but a proxy started or restarted on
// one could not serve at all.
func WriteCertAndKey(hostDir string, certPEM, keyPEM []byte, version string) error {
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fmt.Errorf("write %s: %w", CertAndKeyFile, err)
	}
	if version == "" {
		return fmt.Errorf("write %s: empty version", CertAndKeyFile)
	}
	return writeSecret(hostDir, CertAndKeyFile, CertAndKeySecret, certPEM, keyPEM, version)
}

// WriteC2CCertAndKey writes sds-c2c-cert-and-key.yaml, the certificate of
// the c2c listener, like WriteCertAndKey.
func WriteC2CCertAndKey(hostDir string, certPEM, keyPEM []byte, version string) error {
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fmt.Errorf("write %s: %w", C2CCertAndKeyFile, err)
	}
	if version == "" {
		return fmt.Errorf("write %s: empty version", C2CCertAndKeyFile)
	}
	return writeSecret(hostDir, C2CCertAndKeyFile, C2CCertAndKeySecret, certPEM, keyPEM, version)
}

// WriteIssuedCertAndKey is WriteCertAndKey for a key and certificate that
// credmanager made together (a Credential's CertPEM and KeyPEM), as every
// rotation hands them over: the pair check is left out. It parses the
// chain and the key and derives the key's public half: about 40% of the
// agent's time writing the two SDS files of a rotation (perf profile of
// the ecdsa-p256 wave, issue 16). A pair that did not match would be
// refused by the proxy's reload (which keeps serving the certificate it
// has), and the rotation would be left unconfirmed and retried.
func WriteIssuedCertAndKey(hostDir string, certPEM, keyPEM []byte, version string) error {
	if version == "" {
		return fmt.Errorf("write %s: empty version", CertAndKeyFile)
	}
	return writeSecret(hostDir, CertAndKeyFile, CertAndKeySecret, certPEM, keyPEM, version)
}

// WriteIssuedC2CCertAndKey is WriteC2CCertAndKey for a pair credmanager
// made together (see WriteIssuedCertAndKey).
func WriteIssuedC2CCertAndKey(hostDir string, certPEM, keyPEM []byte, version string) error {
	if version == "" {
		return fmt.Errorf("write %s: empty version", C2CCertAndKeyFile)
	}
	return writeSecret(hostDir, C2CCertAndKeyFile, C2CCertAndKeySecret, certPEM, keyPEM, version)
}

// WriteValidationContext writes sds-id-validation-context.yaml: the trusted
// CA and the SAN matchers. Its version_info is a hash of the content.
func WriteValidationContext(hostDir string, cfg Config) error {
	cfg = cfg.withDefaults()
	if err := checkCAPEM(cfg.TrustedCAPEM); err != nil {
		return fmt.Errorf("write %s: trusted ca: %w", ValidationContextFile, err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("write %s: %w", ValidationContextFile, err)
	}
	h := sha256.New()
	h.Write(cfg.TrustedCAPEM)
	for _, san := range cfg.VerifySAN {
		h.Write([]byte{0})
		h.Write([]byte(san))
	}
	version := hex.EncodeToString(h.Sum(nil))[:16]
	return writeJSON(hostDir, ValidationContextFile, buildValidationContext(cfg, version))
}

func checkMappings(mappings []Mapping, adminPort uint16) error {
	var errs []error
	used := map[uint16]string{}
	claim := func(p uint16, what string) {
		if p == 0 {
			errs = append(errs, fmt.Errorf("%s: port 0", what))
			return
		}
		if prev, ok := used[p]; ok {
			errs = append(errs, fmt.Errorf("%s: port %d already used by %s", what, p, prev))
			return
		}
		used[p] = what
	}
	claim(adminPort, "admin")
	for _, m := range mappings {
		claim(m.ProxyPort, fmt.Sprintf("proxy port for %d", m.AppPort))
		if m.AppPort == 0 {
			errs = append(errs, errors.New("app port 0"))
		}
	}
	return errors.Join(errs...)
}

// writeJSON writes v as indented JSON after the generated-by comment: a
// YAML document still (JSON is YAML's flow style), so Envoy reads the
// .yaml file as before, and cellproxy decodes it without its YAML parser.
// Through sigs.k8s.io/yaml (JSON, then YAML) the bootstrap cost the agent
// ~1.1 ms of CPU per start while 20 started at once, and cellproxy as much
// to turn it back.
func writeJSON(dir, name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return writeGenerated(dir, name, append(data, '\n'))
}

// writeGenerated writes data after the generated-by comment.
func writeGenerated(dir, name string, data []byte) error {
	if err := writeFileAtomic(dir, name, append([]byte(generatedHeader), data...)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// writeSecret writes a certificate secret file, as JSON (see writeJSON):
// cellproxy reads it at each start and rotation without its YAML parser
// (~0.7 ms of CPU per start while 20 started at once, session 15).
func writeSecret(dir, file, name string, certPEM, keyPEM []byte, version string) error {
	return writeJSON(dir, file, buildSecret(name, certPEM, keyPEM, version))
}

// writeFileAtomic replaces dir/name so that a reader sees the old or the
// new content, never a mix. It does not fsync (atomicfile.NoSync): the
// files belong to one container, and a machine crash, the only thing a
// sync protects against, ends that container too.
func writeFileAtomic(dir, name string, data []byte) error {
	return atomicfile.WriteFile(filepath.Join(dir, name), data, FileMode, atomicfile.NoSync)
}

// decodeGenerated decodes a file this package wrote into v: the JSON
// document after its comment line with encoding/json, anything else (a file
// an agent before session 15 wrote as YAML) with the YAML library, which
// is several times slower on the JSON form (an adoption reads every
// instance's certificate).
func decodeGenerated(data []byte, v any) error {
	if rest, ok := bytes.CutPrefix(data, []byte(generatedHeader)); ok && bytes.HasPrefix(rest, []byte("{")) {
		return json.Unmarshal(rest, v)
	}
	return yaml.Unmarshal(data, v)
}

// ReadCertificate answers the leaf certificate of hostDir's
// sds-id-cert-and-key.yaml: what the proxy serves once it has read the
// file (at its next reload or start).
func ReadCertificate(hostDir string) (*x509.Certificate, error) {
	data, err := os.ReadFile(filepath.Join(hostDir, CertAndKeyFile))
	if err != nil {
		return nil, err
	}
	var dr discoveryResponse
	if err := decodeGenerated(data, &dr); err != nil {
		return nil, fmt.Errorf("read %s: %w", CertAndKeyFile, err)
	}
	if len(dr.Resources) != 1 || dr.Resources[0].TLSCertificate == nil {
		return nil, fmt.Errorf("read %s: no certificate secret", CertAndKeyFile)
	}
	block, _ := pem.Decode([]byte(dr.Resources[0].TLSCertificate.CertificateChain.InlineString))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("read %s: no PEM certificate in the chain", CertAndKeyFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", CertAndKeyFile, err)
	}
	return cert, nil
}
