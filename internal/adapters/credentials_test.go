package adapters_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/credmanager"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/adapters"
)

var _ = Describe("Credentials", func() {
	logger := lagertest.NewTestLogger("test")
	// manager answers a credential manager with a CA of its own.
	manager := func() *credmanager.Manager {
		dataDir := GinkgoT().TempDir()
		m, err := credmanager.New(logger, credmanager.Config{DataDir: dataDir, Clock: fakeclock.NewFakeClock(time.Now())})
		Expect(err).NotTo(HaveOccurred())
		return m
	}
	setup := func(h *adapters.Credentials) *containerstore.Instance {
		inst := &containerstore.Instance{GUID: "guid-1",
			User: containerstore.User{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}}
		Expect(containerstore.Pipeline{Credentials: h}.Setup(context.Background(), logger, inst)).To(Succeed())
		DeferCleanup(func() { _ = h.Teardown(context.Background(), logger, "guid-1") })
		return inst
	}

	It("mounts the trusted system certificates read-only at /etc/cf-system-certificates and sets CF_SYSTEM_CERT_PATH, as Diego", func() {
		certs := GinkgoT().TempDir()
		inst := setup(&adapters.Credentials{Manager: manager(), TrustedSystemCertificatesDir: certs})
		Expect(inst.Mounts).To(ContainElement(containerstore.Mount{Source: certs, Destination: "/etc/cf-system-certificates", ReadOnly: true}))
		Expect(inst.Env).To(ContainElement("CF_SYSTEM_CERT_PATH=/etc/cf-system-certificates"))
		Expect(inst.Env).To(ContainElements("CF_INSTANCE_CERT=/etc/cf-instance-credentials/instance.crt",
			"CF_INSTANCE_KEY=/etc/cf-instance-credentials/instance.key"))
	})

	It("restores an adopted instance's credential (the one issued at setup) without issuing another", func() {
		h := &adapters.Credentials{Manager: manager()}
		inst := setup(h)
		restored := &containerstore.Instance{GUID: inst.GUID, User: inst.User}
		Expect(containerstore.Pipeline{Credentials: h}.Restore(context.Background(), logger, restored)).To(Succeed())
		Expect(restored.Credentials).To(Equal(inst.Credentials))
		Expect(restored.CertPEM).To(Equal(inst.CertPEM))
	})

	It("mounts nothing more and sets no CF_SYSTEM_CERT_PATH without a directory", func() {
		inst := setup(&adapters.Credentials{Manager: manager()})
		Expect(inst.Mounts).To(HaveLen(1), "only the instance credentials")
		for _, v := range inst.Env {
			Expect(v).NotTo(HavePrefix("CF_SYSTEM_CERT_PATH="))
		}
	})
})

// sink records the notices a CredentialNotifier sends the store.
type sink struct{ calls []string }

func (s *sink) Send(n containerstore.Notice) {
	switch n := n.(type) {
	case containerstore.CredentialsRotated:
		s.calls = append(s.calls, fmt.Sprintf("update %s %s rotations=%d", n.GUID, n.Info.Serial, n.Info.Rotations))
	case containerstore.Failed:
		s.calls = append(s.calls, fmt.Sprintf("fail %s %s: %s", n.GUID, n.Code, n.Reason))
	case containerstore.Note:
		s.calls = append(s.calls, fmt.Sprintf("publish %s %s: %s", n.Type, n.GUID, n.Message))
	default:
		s.calls = append(s.calls, fmt.Sprintf("unexpected %#v", n))
	}
}

var _ = Describe("CredentialNotifier", func() {
	It("tells the store of a rotation, a failed rotation and an expiry, with the failure code", func() {
		s := &sink{}
		n := adapters.CredentialNotifier{Notices: s}
		logger := lagertest.NewTestLogger("test")
		notAfter := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
		cred := credmanager.Credential{Serial: "ab12", NotAfter: notAfter, Rotations: 2}
		Expect(n.CredentialsRotated(logger, "g1", cred)).To(Succeed())
		n.CredentialsRotationFailed(logger, "g1", errors.New("ca unreachable"), notAfter.Add(-time.Hour))
		n.CredentialsExpired(logger, "g1", cred, errors.New("ca unreachable"))
		Expect(s.calls).To(Equal([]string{
			"update g1 ab12 rotations=2",
			"publish " + executor.EventCredentialsFailed + " g1: rotation failed, retrying at 2026-12-02T06:00:00Z: ca unreachable",
			"fail g1 " + string(executor.FailureCertificateExpired) + ": instance identity certificate expired at 2026-12-02T07:00:00Z: every rotation failed: ca unreachable",
		}))
	})
})
