package runtime

import (
	"context"
	"fmt"
	"os"
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
// the environment has none) runc's HOME rule. The working directory stays
// the process's, and so does the environment unless in says where to put
// it (AppEnvHostPath): then the init runs with runc's default PATH alone
// and the app's environment goes to it in that file. Runs after every
// other option, on the finished process.
//
// The init needs SETUID, SETGID, SETPCAP and KILL to drop its children to
// their users and signal them (cellinit.KeptCapabilities). A non-root app
// loses every capability at its setuid, as it had none when it was the
// process (withoutCapabilitiesUnlessRoot), and no_new_privs keeps it from
// gaining any: then the process gets only those four, in its bounding set
// too (withInitCapabilities); the app starts with that bounding set.
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
		if in.AppEnvHostPath != "" && cfg.AppEnv != "" {
			if err := writeEnvFile(in.AppEnvHostPath, p.Env); err != nil {
				return fmt.Errorf("the app's environment for cellinit: %w", err)
			}
			p.Env = []string{initPath}
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

// initPath is the init's whole environment where the app's goes to it in a
// file (ProcessInit.AppEnvHostPath): runc's default PATH, nothing of the
// app's.
const initPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// writeEnvFile writes env to path, each entry followed by a NUL, readable
// by its owner only (root: the agent; the init reads it as root in the
// container). Written before the container exists and read once its init
// starts, then removed: not synced; one left by a failed creation is
// replaced.
func writeEnvFile(path string, env []string) error {
	var b []byte
	for _, kv := range env {
		b = append(append(b, kv...), 0)
	}
	_ = os.Remove(path) // its mode, should one be left, is not ours to trust
	return os.WriteFile(path, b, 0o600)
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}
