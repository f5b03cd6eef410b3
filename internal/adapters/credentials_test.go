package adapters_test

import (
	"context"
	"os"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/credmanager"
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
		Expect(h.Setup(context.Background(), logger, inst)).To(Succeed())
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

	It("mounts nothing more and sets no CF_SYSTEM_CERT_PATH without a directory", func() {
		inst := setup(&adapters.Credentials{Manager: manager()})
		Expect(inst.Mounts).To(HaveLen(1), "only the instance credentials")
		for _, v := range inst.Env {
			Expect(v).NotTo(HavePrefix("CF_SYSTEM_CERT_PATH="))
		}
	})
})
