package network

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	gocni "github.com/containerd/go-cni"
	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/internal/netnsthread"
)

// netnsSysctls are written in every container's namespace after CNI ADD:
// the containers get no IPv6 (the conflist's IPAM hands out IPv4 only).
// TCP metrics (peers' RTTs, kept up to an hour) are not saved: a pooled
// namespace goes to the next container (reuse.go), which could read them.
var netnsSysctls = map[string]string{
	"net/ipv6/conf/all/disable_ipv6":     "1",
	"net/ipv6/conf/default/disable_ipv6": "1",
	"net/ipv4/tcp_no_metrics_save":       "1",
}

// preparedCNI is the bridge plugin's CNI plus what the loopback and tuning
// plugins used to do, done in-process: loopback up and IPv6 off. Each
// plugin was a process of its own per start (~4-7 ms of CPU each on this
// kind of machine, inside a burst's measured window or on the pool's
// refill); here it is one setns and three syscalls.
type preparedCNI struct {
	CNI
}

// Remove implements CNI. A container or pool slot made before the loopback
// plugin was replaced also left go-cni's cached loopback result; it goes
// with the rest (best effort: a file of a few hundred bytes).
func (c preparedCNI) Remove(ctx context.Context, id, path string, opts ...gocni.NamespaceOpts) error {
	err := c.CNI.Remove(ctx, id, path, opts...)
	if err == nil {
		_ = os.Remove(filepath.Join(cniCacheDir, "results", "cni-loopback-"+id+"-lo"))
	}
	return err
}

// cniCacheDir is libcni's default cache directory (go-cni does not change it).
const cniCacheDir = "/var/lib/cni"

// Setup implements CNI.
func (c preparedCNI) Setup(ctx context.Context, id, path string, opts ...gocni.NamespaceOpts) (*gocni.Result, error) {
	res, err := c.CNI.Setup(ctx, id, path, opts...)
	if err != nil {
		return nil, err
	}
	if err := prepareNetNS(path); err != nil {
		return nil, fmt.Errorf("prepare netns %s: %w", path, err)
	}
	return res, nil
}

// prepareNetNS brings the namespace's loopback up and writes netnsSysctls
// in it, from an OS thread that enters it and comes back.
func prepareNetNS(path string) error { return netnsthread.At(path, inNetNS) }

// inNetNS runs on a thread inside the container's namespace: /proc/sys/net
// and a new socket are that namespace's.
func inNetNS() error {
	for key, value := range netnsSysctls {
		err := os.WriteFile("/proc/sys/"+key, []byte(value), 0o644)
		if errors.Is(err, fs.ErrNotExist) && strings.HasPrefix(key, "net/ipv6/") {
			continue // a kernel booted with ipv6.disable=1: no IPv6 at all
		}
		if err != nil {
			return fmt.Errorf("sysctl %s: %w", key, err)
		}
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}
