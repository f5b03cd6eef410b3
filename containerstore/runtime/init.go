package runtime

import (
	"context"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/internal/cellinit"
)

// withInit makes in.Path the container's process, as root, and hands it
// what runc would have given the app: its argv, user, file limit and (when
// the environment has none) runc's HOME rule. The environment and working
// directory stay the process's: the init passes them on. Runs after every
// other option, on the finished process.
//
// The process keeps the spec's capabilities (the init needs SETUID,
// SETGID, SETPCAP and KILL to drop its children to their users and signal
// them); a non-root app loses them all at its setuid, as it had none when
// it was the process (withoutCapabilitiesUnlessRoot), and keeps the same
// bounding set. Its RLIMIT_NOFILE goes to the app; the process gets the
// larger of it and the proxy's, which runc sets while it still may.
func withInit(in containerstore.ProcessInit) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		p := s.Process
		cfg := in.Config
		cfg.App = p.Args
		cfg.AppUser = &cellinit.Cred{UID: p.User.UID, GID: p.User.GID}
		cfg.AppHome = !hasEnv(p.Env, "HOME")
		noFile := cfg.ProxyNoFile
		for _, r := range p.Rlimits {
			if r.Type == "RLIMIT_NOFILE" {
				cfg.AppNoFile = cellinit.Limit{Soft: r.Soft, Hard: r.Hard}
				noFile = max(noFile, r.Hard)
			}
		}
		if noFile > 0 {
			p.Rlimits = withNoFile(p.Rlimits, noFile)
		}
		p.Args = append([]string{in.Path}, cfg.Args()...)
		p.User.UID, p.User.GID, p.User.AdditionalGids = 0, 0, nil
		return nil
	}
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}
