package proxyconfig

import (
	"os"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestRenderSecretMeansWhatTheLibraryWrites: the directly rendered file
// decodes to the same document as the YAML library's, for versions that
// YAML would read as numbers, booleans or null unquoted, and quotes.
func TestRenderSecretMeansWhatTheLibraryWrites(t *testing.T) {
	cert, err := os.ReadFile("testdata/leaf.pem")
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile("testdata/leaf-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	chain := append(append([]byte{}, cert...), cert...)
	for _, version := range []string{"1a2b3c", "123", "1e5", "0x1f", "true", "null", "~", "", "it's", `a"b`, "serial: 1 # x"} {
		for _, name := range []string{CertAndKeySecret, C2CCertAndKeySecret} {
			got, ok := renderSecret(name, chain, key, version)
			if !ok {
				t.Fatalf("renderSecret(%q) fell back for PEMs", version)
			}
			lib, err := yaml.Marshal(buildSecret(name, chain, key, version))
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			if err := yaml.Unmarshal(got, &a); err != nil {
				t.Fatalf("version %q: rendered file does not parse: %v\n%s", version, err, got)
			}
			if err := yaml.Unmarshal(lib, &b); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a, b) {
				t.Errorf("version %q: rendered %v, library %v", version, a, b)
			}
		}
	}
}

func TestRenderSecretFallsBackForWhatABlockCannotHold(t *testing.T) {
	for what, pem := range map[string]string{
		"no final newline":   "-----BEGIN X-----\nAAAA\n-----END X-----",
		"two final newlines": "-----BEGIN X-----\nAAAA\n\n",
		"an empty line":      "-----BEGIN X-----\n\nAAAA\n",
		"a leading blank":    " -----BEGIN X-----\nAAAA\n",
		"a trailing blank":   "-----BEGIN X----- \nAAAA\n",
		"a tab":              "-----BEGIN X-----\nAA\tAA\n",
		"a carriage return":  "-----BEGIN X-----\r\nAAAA\r\n",
		"non-ASCII":          "-----BEGIN X-----\nAAÄA\n",
		"empty":              "",
	} {
		if _, ok := renderSecret(CertAndKeySecret, []byte(pem), []byte("K\n"), "1"); ok {
			t.Errorf("%s: rendered directly", what)
		}
	}
	if _, ok := renderSecret("2nd", []byte("A\n"), []byte("K\n"), "1"); ok {
		t.Error("a name starting with a digit: rendered directly")
	}
	// The library takes it: the file is still written.
	dir := t.TempDir()
	if err := writeSecret(dir, CertAndKeyFile, CertAndKeySecret, []byte("A\n\nB"), []byte("K\n"), "1"); err != nil {
		t.Fatal(err)
	}
	var doc discoveryResponse
	b, _ := os.ReadFile(dir + "/" + CertAndKeyFile)
	if err := yaml.Unmarshal(b, &doc); err != nil || doc.Resources[0].TLSCertificate.CertificateChain.InlineString != "A\n\nB" {
		t.Errorf("fallback file = %q (%v)", b, err)
	}
}
