package locket

import (
	"os"
	"path/filepath"
	"testing"
)

func TestOwnerKeptAcrossRuns(t *testing.T) {
	file := filepath.Join(t.TempDir(), "owner")
	first, err := loadOwner(file)
	if err != nil {
		t.Fatal(err)
	}
	if !ownerPattern.MatchString(first) {
		t.Fatalf("owner %q is not a UUID", first)
	}
	again, err := loadOwner(file)
	if err != nil || again != first {
		t.Fatalf("second run: owner %q (%v), want %q", again, err, first)
	}
	if err := os.WriteFile(file, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh, err := loadOwner(file)
	if err != nil || fresh == "garbage" || !ownerPattern.MatchString(fresh) {
		t.Fatalf("corrupt file: owner %q (%v), want a new UUID", fresh, err)
	}
	a, _ := loadOwner("")
	b, _ := loadOwner("")
	if a == b {
		t.Fatalf("without a file every run must get a new owner, got %q twice", a)
	}
}
