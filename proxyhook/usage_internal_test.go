package proxyhook

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRSSReadsRssAnon(t *testing.T) {
	procfs := t.TempDir()
	status := "Name:\tcellproxy\nVmRSS:\t   9000 kB\nRssAnon:\t    1234 kB\nRssFile:\t    7766 kB\n"
	if err := os.MkdirAll(filepath.Join(procfs, "42"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(procfs, "42", "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := rss(procfs, 42); got != 1234<<10 {
		t.Errorf("rss = %d, want RssAnon %d (not VmRSS)", got, 1234<<10)
	}
	if got := rss(procfs, 43); got != 0 {
		t.Errorf("rss of a gone process = %d, want 0", got)
	}
}
