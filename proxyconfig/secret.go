package proxyconfig

import (
	"bytes"
	"strings"
)

// renderSecret renders the SDS file of a certificate secret the way the
// YAML library lays it out (see the golden file), without it: marshalling
// through sigs.k8s.io/yaml (JSON, then YAML) took ~170us of the agent's
// CPU per file, and a rotation writes two. It answers false when a PEM
// does not fit a literal block scalar as is (a line that is empty, starts
// or ends with a blank or holds a non-printable byte, or no single final
// newline); the caller then uses the library. The version is always
// single-quoted, so no serial can read as a number or a boolean.
func renderSecret(name string, certPEM, keyPEM []byte, version string) ([]byte, bool) {
	if !blockSafe(certPEM) || !blockSafe(keyPEM) || !plainSafe(name) {
		return nil, false
	}
	var b bytes.Buffer
	b.Grow(len(generatedHeader) + 2*(len(certPEM)+len(keyPEM)) + 512)
	b.WriteString(generatedHeader)
	b.WriteString("resources:\n- '@type': " + typeSecret + "\n  name: " + name + "\n  tls_certificate:\n")
	b.WriteString("    certificate_chain:\n      inline_string: |\n")
	writeBlock(&b, certPEM, "        ")
	b.WriteString("    private_key:\n      inline_string: |\n")
	writeBlock(&b, keyPEM, "        ")
	b.WriteString("version_info: '" + strings.ReplaceAll(version, "'", "''") + "'\n")
	return b.Bytes(), true
}

// blockSafe: every line non-empty printable ASCII without a blank at
// either end, and exactly one newline at the end.
func blockSafe(pem []byte) bool {
	if len(pem) < 2 || pem[len(pem)-1] != '\n' {
		return false
	}
	for _, line := range bytes.Split(pem[:len(pem)-1], []byte("\n")) {
		if len(line) == 0 || line[0] == ' ' || line[len(line)-1] == ' ' {
			return false
		}
		for _, c := range line {
			if c < ' ' || c > '~' {
				return false
			}
		}
	}
	return true
}

// plainSafe: a secret name (one of ours: lower case, digits, dashes, a
// letter first) that YAML reads as itself.
func plainSafe(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func writeBlock(b *bytes.Buffer, pem []byte, indent string) {
	for _, line := range bytes.SplitAfter(pem, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		b.WriteString(indent)
		b.Write(line)
	}
}
