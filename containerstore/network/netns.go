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
