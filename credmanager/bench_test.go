package credmanager_test

import (
	"fmt"
	"net"
	"os"
	"testing"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/credmanager"
)

// go test -run '^$' -bench . ./credmanager/
//
// BenchmarkGenerateKey: key generation alone. BenchmarkIssue: key
// generation + signing by the (dev, ECDSA P-256) CA, no files.
// BenchmarkIssueAndWrite: Manager.Issue as the agent calls it, files
// included. BenchmarkRenew: a rotation's issuance and files in an existing
// directory (new generation, swaps, the generation before removed).

func benchManager(b *testing.B, kt credmanager.KeyType) *credmanager.Manager {
	m, err := credmanager.New(lager.NewLogger("bench"), credmanager.Config{DataDir: b.TempDir(), KeyType: kt})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func benchIdentity(guid string) credmanager.Identity {
	return credmanager.Identity{
		GUID:                guid,
		IPs:                 []net.IP{net.ParseIP("10.255.0.7")},
		OrganizationalUnits: []string{"organization:o1", "space:s1", "app:a1"},
		UID:                 os.Getuid(),
		GID:                 os.Getgid(),
	}
}

func BenchmarkGenerateKey(b *testing.B) {
	for _, kt := range credmanager.KeyTypes {
		b.Run(string(kt), func(b *testing.B) {
			for b.Loop() {
				if _, err := credmanager.GenerateKey(kt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkIssue(b *testing.B) {
	for _, kt := range credmanager.KeyTypes {
		b.Run(string(kt), func(b *testing.B) {
			m := benchManager(b, kt)
			id := benchIdentity("guid-1")
			for b.Loop() {
				if _, err := credmanager.IssueInMemory(m, id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkIssueAndWrite(b *testing.B) {
	m := benchManager(b, credmanager.KeyTypeECDSAP256)
	i := 0
	for b.Loop() {
		i++
		if _, err := m.Issue(lager.NewLogger("bench"), benchIdentity(fmt.Sprintf("guid-%d", i))); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRenew(b *testing.B) {
	m := benchManager(b, credmanager.KeyTypeECDSAP256)
	id := benchIdentity("guid-1")
	logger := lager.NewLogger("bench")
	if _, err := m.Issue(logger, id); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		if _, err := credmanager.Renew(m, logger, id, i); err != nil {
			b.Fatal(err)
		}
	}
}
