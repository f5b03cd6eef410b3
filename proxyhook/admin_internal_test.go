package proxyhook

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretsReportServes(t *testing.T) {
	const body = `{"listeners":[
		{"listener":"l8080","secret":"id-cert-and-key","version":"v","serial_number":"0a1b"},
		{"listener":"l9090","secret":"id-cert-and-key","version":"v","serial_number":"0a1b"},
		{"listener":"c2c","secret":"c2c-cert-and-key","version":"w","serial_number":"ff"}]}`
	var r secretsReport
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	for serial, want := range map[string]string{
		"a1b": "", // credmanager's text has no leading zero
		"A1B": "", // hex is hex
		"a1c": "listener l8080 serves serial 0a1b, not the issued a1c",
		"zz":  `issued serial "zz" is not hex`,
	} {
		err := r.serves(serial)
		if (want == "") != (err == nil) || (err != nil && err.Error() != want) {
			t.Errorf("serves(%q) = %v, want %q", serial, err, want)
		}
	}
	r.Listeners[1].SerialNumber = "01"
	if err := r.serves("a1b"); err == nil || !strings.Contains(err.Error(), "l9090") {
		t.Errorf("one listener behind: %v, want it named", err)
	}
	r.Listeners = r.Listeners[2:]
	if err := r.serves("ff"); err == nil || !strings.Contains(err.Error(), "no listener of secret id-cert-and-key") {
		t.Errorf("no identity listener: %v, want an error (a c2c serial proves nothing)", err)
	}
}

func TestDialInAMissingNamespaceFailsClearly(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "netns")
	_, err := dialIn(context.Background(), missing, "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "open network namespace "+missing) {
		t.Errorf("dialIn = %v, want the namespace named", err)
	}
}
