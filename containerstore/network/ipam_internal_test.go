package network

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testIPAM(t *testing.T, cidr string) *hostLocalIPAM {
	t.Helper()
	_, subnet, err := net.ParseCIDR(cidr)
	if err != nil {
		t.Fatal(err)
	}
	return newHostLocalIPAM(filepath.Join(t.TempDir(), "ipam", "net"), subnet)
}

func mustAllocate(t *testing.T, a *hostLocalIPAM, id string) string {
	t.Helper()
	ip, err := a.allocate(id, "eth0")
	if err != nil {
		t.Fatalf("allocate %s: %v", id, err)
	}
	return ip.String()
}

// The addresses of a /29 in host-local's order: after the gateway (.1),
// never the network or broadcast address, round after the last handed
// out (a freed address is handed out last), and none left is an error.
func TestIPAMHandsOutInHostLocalsOrder(t *testing.T) {
	a := testIPAM(t, "10.9.0.0/29")
	var got []string
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		got = append(got, mustAllocate(t, a, id))
	}
	if want := "10.9.0.2 10.9.0.3 10.9.0.4 10.9.0.5 10.9.0.6"; strings.Join(got, " ") != want {
		t.Fatalf("handed out %v, want %s", got, want)
	}
	if _, err := a.allocate("f", "eth0"); err == nil || !strings.Contains(err.Error(), "no free address in 10.9.0.0/29") {
		t.Fatalf("allocate with none left: %v", err)
	}
	if err := a.release("b"); err != nil {
		t.Fatal(err)
	}
	if err := a.release("d"); err != nil {
		t.Fatal(err)
	}
	if ip := mustAllocate(t, a, "g"); ip != "10.9.0.3" {
		t.Fatalf("after .6 the search wraps to .2: got %s, want .3 (b's)", ip)
	}
	if ip := mustAllocate(t, a, "h"); ip != "10.9.0.5" {
		t.Fatalf("got %s, want .5 (d's, freed before b's was handed out again)", ip)
	}
}

// The files are the plugin's: a lease names its id and interface, the
// last address handed out is where the plugin (or the next agent) goes
// on from, and a lease the plugin wrote is released by id.
func TestIPAMFilesAreHostLocals(t *testing.T) {
	a := testIPAM(t, "10.9.0.0/24")
	if err := os.MkdirAll(a.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// As the plugin left them: .7 handed out last, .8 leased.
	for name, content := range map[string]string{lastReservedFile: "10.9.0.7", "10.9.0.8": "plugin-made\r\neth0"} {
		if err := os.WriteFile(filepath.Join(a.dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if ip := mustAllocate(t, a, "next"); ip != "10.9.0.9" {
		t.Fatalf("got %s, want .9 (after the plugin's last, past its lease)", ip)
	}
	b, err := os.ReadFile(filepath.Join(a.dir, "10.9.0.9"))
	if err != nil || string(b) != "next\r\neth0" {
		t.Fatalf("lease file %q, %v", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(a.dir, lastReservedFile)); string(b) != "10.9.0.9" {
		t.Fatalf("%s = %q, want 10.9.0.9", lastReservedFile, b)
	}
	leases, err := ipamLeases(a.dir)
	if err != nil || len(leases["next"]) != 1 || len(leases["plugin-made"]) != 1 {
		t.Fatalf("ipamLeases = %v, %v", leases, err)
	}
	if err := a.release("plugin-made"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(a.dir, "10.9.0.8")); !os.IsNotExist(err) {
		t.Fatalf("the plugin's lease is still there: %v", err)
	}
	if err := a.release("never-leased"); err != nil {
		t.Fatalf("releasing what is not leased: %v", err)
	}
}

// An address this value leased and another one (an agent restarted on
// the same files) released and gave to someone else is not released by
// the first one's stale memory.
func TestIPAMReleaseChecksTheFile(t *testing.T) {
	_, subnet, _ := net.ParseCIDR("10.9.0.0/24")
	dir := filepath.Join(t.TempDir(), "ipam")
	first, second := newHostLocalIPAM(dir, subnet), newHostLocalIPAM(dir, subnet)
	ip := mustAllocate(t, first, "old")
	if err := second.release("old"); err != nil {
		t.Fatal(err)
	}
	// second goes on after .2: make it hand .2 to "new" by taking the rest.
	if err := os.WriteFile(filepath.Join(dir, lastReservedFile), []byte("10.9.0.254"), 0o644); err != nil {
		t.Fatal(err)
	}
	third := newHostLocalIPAM(dir, subnet)
	if got := mustAllocate(t, third, "new"); got != ip {
		t.Fatalf("got %s, want %s again", got, ip)
	}
	if err := first.release("old"); err != nil {
		t.Fatal(err)
	}
	if id := leaseID(filepath.Join(dir, ip)); id != "new" {
		t.Fatalf("lease of %s names %q after a stale release, want new", ip, id)
	}
}

func TestPlumbingNames(t *testing.T) {
	ip := net.ParseIP("10.255.1.7")
	if got := hostVethName(ip); got != "veth0aff0107" || len(got) > 15 {
		t.Errorf("hostVethName = %q", got)
	}
	if got := containerMAC(ip).String(); got != "0a:58:0a:ff:01:07" {
		t.Errorf("containerMAC = %s", got)
	}
	_, n, _ := net.ParseCIDR("10.255.0.0/22")
	if got := broadcastOf(n).String(); got != "10.255.3.255" {
		t.Errorf("broadcastOf = %s", got)
	}
}
