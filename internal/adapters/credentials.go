package adapters

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/credmanager"
	"github.com/cellagent/cellagent/executor"
)

// Credentials plugs the credential manager into the container store: it
// issues each instance's identity at initialize, mounts it, tracks its
// rotation, and removes it at delete.
type Credentials struct {
	Manager *credmanager.Manager
	// Observe, when set, is told how long each issuance took (metrics).
	Observe func(time.Duration)
	// TrustedSystemCertificatesDir, when set, is mounted read-only at
	// SystemCertificatesPath with CF_SYSTEM_CERT_PATH pointing at it: what
	// Diego's storenode does with the rep's trusted_certificates_path.
	TrustedSystemCertificatesDir string
}

// SystemCertificatesPath is where the platform's trusted CAs appear in a
// container (the path Cloud Controller gives Diego in every LRP).
const SystemCertificatesPath = "/etc/cf-system-certificates"

var (
	_ containerstore.SetupStep[containerstore.CredentialsResult] = (*Credentials)(nil)
	_ containerstore.Restorer[containerstore.CredentialsResult]  = (*Credentials)(nil)
	_ containerstore.OrphanCleaner                               = (*Credentials)(nil)
	_ containerstore.RequestValidator                            = (*Credentials)(nil)
)

func (h *Credentials) Name() string { return "credentials" }

func (h *Credentials) ValidateRequest(req *executor.RunRequest) error {
	if req.CertificateProperties == nil {
		return nil
	}
	if err := credmanager.ValidateCertificateProperties(req.CertificateProperties.OrganizationalUnit); err != nil {
		return executor.NewError(executor.ErrInvalidRequest, "certificate_properties: %v", err)
	}
	return nil
}

func identity(inst containerstore.Instance) credmanager.Identity {
	id := credmanager.Identity{GUID: inst.GUID, UID: int(inst.User.UID), GID: int(inst.User.GID)}
	for _, s := range []string{inst.InternalIP, inst.InternalIPv6} {
		if ip := net.ParseIP(s); ip != nil && !ip.IsLoopback() {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			id.IPs = append(id.IPs, ip)
		}
	}
	if cp := inst.Request.CertificateProperties; cp != nil {
		id.OrganizationalUnits = cp.OrganizationalUnit
	}
	return id
}

// CredentialInfo is the API's view of a credential.
func CredentialInfo(c credmanager.Credential) *executor.CredentialInfo {
	return &executor.CredentialInfo{Serial: c.Serial, NotBefore: c.NotBefore, NotAfter: c.NotAfter, Rotations: c.Rotations}
}

func (h *Credentials) Setup(ctx context.Context, logger lager.Logger, in containerstore.Instance) (containerstore.CredentialsResult, error) {
	id := identity(in)
	start := time.Now()
	cred, err := h.Manager.Issue(logger, id)
	if h.Observe != nil && err == nil {
		h.Observe(time.Since(start))
	}
	if err != nil {
		if errors.Is(err, credmanager.ErrInvalidCertificateProperties) {
			return containerstore.CredentialsResult{}, fmt.Errorf("%w: %v", executor.ErrInvalidRequest, err)
		}
		return containerstore.CredentialsResult{}, err
	}
	if err := h.Manager.Track(logger, id, cred); err != nil {
		return containerstore.CredentialsResult{}, err
	}
	return h.result(in.GUID, cred), nil
}

// result mounts cred (and the trusted CAs) and names them in the
// environment.
func (h *Credentials) result(guid string, cred credmanager.Credential) containerstore.CredentialsResult {
	dir, _ := h.Manager.HostDir(guid)
	res := adopted(cred)
	res.Mounts = []containerstore.Mount{{Source: dir, Destination: credmanager.ContainerPath, ReadOnly: true}}
	res.Env = []string{
		"CF_INSTANCE_CERT=" + path.Join(credmanager.ContainerPath, credmanager.CertFile),
		"CF_INSTANCE_KEY=" + path.Join(credmanager.ContainerPath, credmanager.KeyFile),
		// One file holding key and chain: the only way to read a pair that
		// is guaranteed to match across a rotation with two plain opens.
		"CF_INSTANCE_CERT_BUNDLE=" + path.Join(credmanager.ContainerPath, credmanager.BundleFile),
	}
	if h.TrustedSystemCertificatesDir != "" {
		res.Mounts = append(res.Mounts, containerstore.Mount{Source: h.TrustedSystemCertificatesDir, Destination: SystemCertificatesPath, ReadOnly: true})
		res.Env = append(res.Env, "CF_SYSTEM_CERT_PATH="+SystemCertificatesPath)
	}
	return res
}

// adopted is the result of a restore: the credential, no mounts (the
// container has them).
func adopted(cred credmanager.Credential) containerstore.CredentialsResult {
	return containerstore.CredentialsResult{Info: CredentialInfo(cred), CertPEM: cred.CertPEM, KeyPEM: cred.KeyPEM}
}

func (h *Credentials) Teardown(ctx context.Context, logger lager.Logger, guid string) error {
	h.Manager.Untrack(guid)
	return h.Manager.Remove(logger, guid)
}

func (h *Credentials) Restore(ctx context.Context, logger lager.Logger, in containerstore.Instance) (containerstore.CredentialsResult, error) {
	cred, err := h.Manager.Adopt(logger, identity(in))
	if err != nil {
		return containerstore.CredentialsResult{}, err
	}
	return adopted(cred), nil
}

func (h *Credentials) CleanupOrphans(ctx context.Context, logger lager.Logger, keep func(string) bool) error {
	return h.Manager.RemoveOrphans(logger, keep)
}

// CredentialNotifier tells the store about rotations (event + GET
// /v1/containers) and fails an instance whose certificate expired, by
// notices to its inbox.
type CredentialNotifier struct {
	Notices containerstore.Notifier
}

var (
	_ credmanager.Handler        = CredentialNotifier{}
	_ credmanager.ExpiryHandler  = CredentialNotifier{}
	_ credmanager.FailureHandler = CredentialNotifier{}
)

func (n CredentialNotifier) CredentialsRotationFailed(logger lager.Logger, guid string, err error, retryAt time.Time) {
	n.Notices.Send(containerstore.Note{GUID: guid, Type: executor.EventCredentialsFailed,
		Message: fmt.Sprintf("rotation failed, retrying at %s: %v", retryAt.Format(time.RFC3339), err)})
}

func (n CredentialNotifier) CredentialsRotated(logger lager.Logger, guid string, cred credmanager.Credential) error {
	n.Notices.Send(containerstore.CredentialsRotated{GUID: guid, Info: *CredentialInfo(cred)})
	return nil
}

func (n CredentialNotifier) CredentialsExpired(logger lager.Logger, guid string, cred credmanager.Credential, err error) {
	n.Notices.Send(containerstore.Failed{GUID: guid, Code: executor.FailureCertificateExpired,
		Reason: fmt.Sprintf("instance identity certificate expired at %s: every rotation failed: %v", cred.NotAfter.Format("2006-01-02T15:04:05Z07:00"), err)})
}
