package runtime

import (
	"context"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/internal/cellinit"
)

// withInit makes in.Path the container's process, as root, and hands it
// what runc would have given the app: its argv, user, file limit and (when
// the environment has none) runc's HOME rule. The environment and working
// directory stay the process's: the init passes them on. Runs after every
// other option, on the finished process.
//
// The init needs SETUID, SETGID, SETPCAP and KILL to drop its children to
// their users and signal them (cellinit.KeptCapabilities). A non-root app
// loses every capability at its setuid, as it had none when it was the
// process (withoutCapabilitiesUnlessRoot), and no_new_privs keeps it from
// gaining any: then the process gets only those four, and DAC_OVERRIDE
// and DAC_READ_SEARCH for looking up the app's executable, in its bounding
// set too (withInitCapabilities); the app starts with that bounding set.
// A root app keeps the container's capabilities, and so does the init
// until the app runs. Its RLIMIT_NOFILE goes to the app; the process gets
// the larger of it and the proxy's, which runc sets while it still may.
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
		if p.User.UID != 0 {
			withInitCapabilities(p.Capabilities)
		}
		p.Args = append([]string{in.Path}, cfg.Args()...)
		p.User.UID, p.User.GID, p.User.AdditionalGids = 0, 0, nil
		return nil
	}
}

// withInitCapabilities leaves c what the init keeps once the app runs
// (cellinit.KeptCapabilityNames), of those the container granted, in its
// bounding, permitted and effective sets, and no inheritable or ambient
// one: runc drops the rest before the init exists. (The init, C since
// issue 16, looks the app's executable up in the app's child after it
// took the app's user, so it needs no DAC capability for that either.)
func withInitCapabilities(c *specs.LinuxCapabilities) {
	if c == nil {
		return
	}
	only := func(set []string) []string {
		var out []string
		for _, name := range set {
			if slices.Contains(cellinit.KeptCapabilityNames, name) {
				out = append(out, name)
			}
		}
		return out
	}
	c.Bounding, c.Permitted, c.Effective = only(c.Bounding), only(c.Permitted), only(c.Effective)
	c.Inheritable, c.Ambient = nil, nil
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}
