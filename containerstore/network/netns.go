package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// NetNSDir is where iproute2 (and so this package) keeps named namespaces.
const NetNSDir = "/var/run/netns"

//go:generate go tool counterfeiter -o networkfakes/fake_namespaces.go . Namespaces

// Namespaces makes and removes named network namespaces.
type Namespaces interface {
	// Create makes the namespace and returns its path.
	Create(ctx context.Context, name string) (string, error)
	// Delete removes the namespace; a missing one is not an error.
	Delete(ctx context.Context, name string) error
	// Path returns the path of the namespace and whether it exists.
	Path(name string) (string, bool)
	// List returns the names of all namespaces on the host.
	List() ([]string, error)
	// Rename gives the namespace from the name to (a pooled namespace
	// claimed by a container) and returns its new path.
	Rename(ctx context.Context, from, to string) (string, error)
}

// IPNetNS is Namespaces through iproute2's `ip netns`, so the namespaces
// show in `ip netns list` and are bind mounts that outlive the agent.
type IPNetNS struct {
	// Dir is NetNSDir unless a test says otherwise.
	Dir string

	// createMu serialises `ip netns add`: the first call on a fresh host
	// sets up the shared mount of Dir, which two concurrent calls can race on.
	createMu sync.Mutex
}

var _ Namespaces = (*IPNetNS)(nil)

func (n *IPNetNS) dir() string {
	if n.Dir == "" {
		return NetNSDir
	}
	return n.Dir
}

// Create implements Namespaces.
func (n *IPNetNS) Create(ctx context.Context, name string) (string, error) {
	n.createMu.Lock()
	defer n.createMu.Unlock()
	if err := runIP(ctx, "netns", "add", name); err != nil {
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	return filepath.Join(n.dir(), name), nil
}

// Delete implements Namespaces.
func (n *IPNetNS) Delete(ctx context.Context, name string) error {
	if _, ok := n.Path(name); !ok {
		return nil
	}
	if err := runIP(ctx, "netns", "delete", name); err != nil {
		if _, ok := n.Path(name); !ok {
			return nil
		}
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}

// Path implements Namespaces.
func (n *IPNetNS) Path(name string) (string, bool) {
	p := filepath.Join(n.dir(), name)
	_, err := os.Lstat(p)
	return p, err == nil
}

// List implements Namespaces.
func (n *IPNetNS) List() ([]string, error) {
	entries, err := os.ReadDir(n.dir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list netns: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// Rename implements Namespaces: a bind mount of the namespace under the new
// name, then the old one unmounted, in-process (no `ip` run on a start).
// The namespace itself (its veth, address, sysctls) is untouched.
func (n *IPNetNS) Rename(_ context.Context, from, to string) (string, error) {
	src, dst := filepath.Join(n.dir(), from), filepath.Join(n.dir(), to)
	f, err := os.OpenFile(dst, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return "", fmt.Errorf("rename netns %s to %s: %w", from, to, err)
	}
	f.Close()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		os.Remove(dst)
		return "", fmt.Errorf("rename netns %s to %s: bind mount: %w", from, to, err)
	}
	// The namespace now has two names; a failure here leaves the old one
	// behind, which Delete(from) removes later (teardown knows both).
	if err := unix.Unmount(src, unix.MNT_DETACH); err == nil {
		os.Remove(src)
	}
	return dst, nil
}

func runIP(ctx context.Context, args ...string) error {
	return run(ctx, "ip", args...)
}

// run runs a command and puts its stderr into the error.
func run(ctx context.Context, name string, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
