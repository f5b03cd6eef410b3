package network

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/internal/netnsthread"
)

// A deleted container's namespace goes back to the pool when it came from
// it, the pool has room, and nothing of the container is left in it: its
// veth and address stay, so the next start claims it without CNI ADD, and
// the delete runs no CNI DEL. Anything the checks do not vouch for is
// destroyed as before.

// Scrubber says whether a namespace a container used can serve another.
type Scrubber interface {
	// Reusable answers nil when the namespace at path holds nothing of
	// its last container, and else what is left.
	Reusable(path string, ip net.IP) error
}

// NetNSScrubber is Scrubber for namespaces made by the pool: no process
// may be in it; its links are lo and eth0, eth0 has ip and no other
// address, lo is up; IPv6 is still off and TCP metrics are still not
// saved; its neighbour table knows no address but its gateway's; and it
// holds no socket but TCP ones in TIME_WAIT between two of its own
// addresses (cellinit's checks of the app) on a port of its ephemeral
// range, which tell the next container nothing of whom the last one
// talked to and which no listener of the next one can need. Other
// TIME_WAIT sockets alone answer ErrOnlyTimeWait: the namespace may go
// back, to be handed out once the kernel ended them.
type NetNSScrubber struct {
	// Proc is /proc unless a test says otherwise.
	Proc string
}

// Reusable implements Scrubber.
func (s NetNSScrubber) Reusable(path string, ip net.IP) error {
	var ns unix.Stat_t
	if err := unix.Stat(path, &ns); err != nil {
		return fmt.Errorf("stat netns: %w", err)
	}
	if pid, err := s.processIn(ns.Dev, ns.Ino); err != nil {
		return err
	} else if pid != "" {
		return fmt.Errorf("process %s is in it", pid)
	}
	return netnsthread.At(path, func() error { return scrubbed(ip) })
}

// processIn answers a process whose network namespace is dev:ino ("" when
// none). It is a second line only: TeardownStopped is called once the
// runtime deleted the container, and a process that forks and exits
// between the listing and the look can slip through. A process whose main
// thread ended has no ns/net of its own to look at; its other threads'
// are. (Moving one thread of a process into another namespace takes
// CAP_SYS_ADMIN, which no container has.)
func (s NetNSScrubber) processIn(dev, ino uint64) (string, error) {
	proc := s.Proc
	if proc == "" {
		proc = "/proc"
	}
	entries, err := os.ReadDir(proc)
	if err != nil {
		return "", fmt.Errorf("list processes: %w", err)
	}
	var st unix.Stat_t
	in := func(path string) bool { return unix.Stat(path, &st) == nil && st.Ino == ino && st.Dev == dev }
	for _, e := range entries {
		name := e.Name()
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		if in(proc + "/" + name + "/ns/net") {
			return name, nil
		}
		if unix.Stat(proc+"/"+name+"/ns/net", &st) == nil {
			continue
		}
		// A process that ended meanwhile, or whose main thread did.
		tasks, _ := os.ReadDir(proc + "/" + name + "/task")
		for _, t := range tasks {
			if in(proc + "/" + name + "/task/" + t.Name() + "/ns/net") {
				return name, nil
			}
		}
	}
	return "", nil
}

// scrubbed runs on a thread inside the namespace: /proc/thread-self/net and
// /proc/sys/net are the namespace's.
func scrubbed(ip net.IP) error {
	if err := linksAsMade(ip); err != nil {
		return err
	}
	for key, value := range netnsSysctls {
		b, err := os.ReadFile("/proc/sys/" + key)
		if errors.Is(err, fs.ErrNotExist) && strings.HasPrefix(key, "net/ipv6/") {
			continue // no IPv6 in this kernel
		}
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(string(b)); got != value {
			return fmt.Errorf("sysctl %s is %s, not %s", key, got, value)
		}
	}
	gw, err := defaultGateway()
	if err != nil {
		return err
	}
	if other, err := neighbourOtherThan(gw); err != nil {
		return err
	} else if other != "" {
		return fmt.Errorf("its neighbour table knows %s", other)
	}
	first, last, err := ephemeralRange()
	if err != nil {
		return err
	}
	own := func(a net.IP) bool { return a.IsLoopback() || a.Equal(ip) }
	var timeWait error
	for _, table := range []string{"tcp", "tcp6", "udp", "udp6", "raw", "raw6"} {
		f, err := os.Open("/proc/thread-self/net/" + table)
		if errors.Is(err, fs.ErrNotExist) {
			continue // no IPv6 in this kernel
		}
		if err != nil {
			return err
		}
		left, waiting, err := leftSocket(f, strings.HasPrefix(table, "tcp"), first, last, own)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s sockets: %w", table, err)
		}
		if left != "" && !waiting {
			return fmt.Errorf("%s socket %s is open", table, left)
		}
		if left != "" && timeWait == nil {
			timeWait = fmt.Errorf("%w: %s socket %s", ErrOnlyTimeWait, table, left)
		}
	}
	return timeWait
}

// linksAsMade checks that the namespace has lo (up, 127.0.0.1) and eth0
// (ip alone), and no other link.
func linksAsMade(ip net.IP) error {
	ifs, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("links: %w", err)
	}
	var names []string
	for _, ifc := range ifs {
		names = append(names, ifc.Name)
		addrs, err := ifc.Addrs()
		if err != nil {
			return fmt.Errorf("addresses of %s: %w", ifc.Name, err)
		}
		var ips []string
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				ips = append(ips, n.IP.String())
			}
		}
		switch ifc.Name {
		case "lo":
			if ifc.Flags&net.FlagUp == 0 || !slices.Contains(ips, "127.0.0.1") {
				return fmt.Errorf("lo is not as made: up %t, addresses %v", ifc.Flags&net.FlagUp != 0, ips)
			}
		case containerIfName:
			if len(ips) != 1 || ips[0] != ip.String() {
				return fmt.Errorf("%s has addresses %v, not %s alone", ifc.Name, ips, ip)
			}
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{containerIfName, "lo"}) {
		return fmt.Errorf("links are %v, not %s and lo", names, containerIfName)
	}
	return nil
}

// ephemeralRange is the namespace's net.ipv4.ip_local_port_range.
func ephemeralRange() (first, last uint64, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 2 {
		first, err = strconv.ParseUint(f[0], 10, 16)
		if err == nil {
			last, err = strconv.ParseUint(f[1], 10, 16)
		}
	}
	if len(f) != 2 || err != nil {
		return 0, 0, fmt.Errorf("ip_local_port_range %q", b)
	}
	return first, last, nil
}

// tcpTimeWait is TCP_TIME_WAIT in /proc/net/tcp's st column.
const tcpTimeWait = "06"

// ErrOnlyTimeWait: what is left in a namespace is TCP TIME_WAIT sockets
// the next container may not meet (on a port its app may listen on, or
// to an outside peer), and nothing else. The kernel ends them within
// TimeWaitLength: the namespace can go back to the pool, to be handed
// out only after that (returnSlot).
var ErrOnlyTimeWait = errors.New("only TIME_WAIT sockets are left")

// TimeWaitLength is Linux's TCP_TIMEWAIT_LEN (60 s, fixed) and a second
// more.
const TimeWaitLength = 61 * time.Second

// leftSocket reads a /proc/net/{tcp,udp,raw}[6] table and answers the
// first socket that may not stay ("local-address state"), or "": a TCP
// TIME_WAIT may, when its local port is in first..last and its remote
// address is one of the namespace's own. When the only sockets that may
// not stay are TIME_WAIT ones, it answers the first of them and
// waiting true (they end by themselves, see ErrOnlyTimeWait).
func leftSocket(r io.Reader, tcp bool, first, last uint64, own func(net.IP) bool) (left string, waiting bool, err error) {
	sc := bufio.NewScanner(r)
	sc.Scan() // the header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 {
			continue
		}
		local, remote, state := fields[1], fields[2], fields[3]
		if tcp && state == tcpTimeWait {
			_, port, err := procAddr(local)
			peer, _, perr := procAddr(remote)
			if err == nil && perr == nil && port >= first && port <= last && own(peer) {
				continue
			}
			if left == "" {
				left, waiting = local+" state "+state, true
			}
			continue
		}
		return local + " state " + state, false, nil
	}
	return left, waiting, sc.Err()
}

// procAddr parses a /proc/net address "HEXIP:HEXPORT": the IP's 32-bit
// words are in host (little-endian) order.
func procAddr(s string) (net.IP, uint64, error) {
	hexIP, hexPort, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if !ok || err != nil || (len(hexIP) != 8 && len(hexIP) != 32) {
		return nil, 0, fmt.Errorf("address %q", s)
	}
	ip := make(net.IP, len(hexIP)/2)
	for w := 0; w < len(ip); w += 4 {
		word, err := strconv.ParseUint(hexIP[2*w:2*w+8], 16, 32)
		if err != nil {
			return nil, 0, fmt.Errorf("address %q", s)
		}
		ip[w], ip[w+1], ip[w+2], ip[w+3] = byte(word), byte(word>>8), byte(word>>16), byte(word>>24)
	}
	return ip, port, nil
}

// defaultGateway is the gateway of the namespace's IPv4 default route
// (nil when it has none), from /proc/thread-self/net/route.
func defaultGateway() (net.IP, error) {
	b, err := os.ReadFile("/proc/thread-self/net/route")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 2 && f[1] == "00000000" {
			gw, _, err := procAddr(f[2] + ":0")
			return gw, err
		}
	}
	return nil, nil
}

// neighbourOtherThan answers an address in the namespace's neighbour table
// other than gw ("" when none): the addresses the last container reached
// on the subnet directly.
func neighbourOtherThan(gw net.IP) (string, error) {
	b, err := os.ReadFile("/proc/thread-self/net/arp")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 0 && !net.ParseIP(f[0]).Equal(gw) {
			return f[0], nil
		}
	}
	return "", nil
}

// returnSlot gives st's namespace back to the pool instead of destroying
// it, when it came from the pool, the pool has room and the scrubber
// finds nothing of the container left. The container's host ports and
// filter go, and the host forgets the address's connection-tracking
// entries, so no packet of the old container's flows reaches the next
// one. ok is false when anything was not so: the caller destroys the
// namespace as for any other container (what was removed here is gone
// for it too). The slot is not claimable until ready(slot) after the
// container's state is removed.
func (m *Manager) returnSlot(ctx context.Context, logger lager.Logger, st containerState, path string) (poolSlot, bool) {
	if m.pool == nil || st.PoolSlot == "" || !st.Complete || st.IPv4 == nil || m.scrubber == nil || m.conntrack == nil {
		return poolSlot{}, false
	}
	notReturned := func(reason string, err error) (poolSlot, bool) {
		logger.Info("not-returned-to-pool", lager.Data{"slot": st.PoolSlot, "reason": reason, "error": err.Error()})
		return poolSlot{}, false
	}
	if !m.pool.hasRoom() {
		// The refill had made the claimed slot's place good again: what
		// an operator sees after a delete when the cell is quiet.
		return notReturned("pool-full", errPoolFull)
	}
	var notBefore time.Time
	if m.cfg.ReturnDelay > 0 {
		notBefore = m.cfg.Clock.Now().Add(m.cfg.ReturnDelay)
	}
	if err := m.scrubber.Reusable(path, st.IPv4); errors.Is(err, ErrOnlyTimeWait) {
		// An app whose server closes first (an HTTP check asks
		// Connection: close) leaves TIME_WAITs on its own port: handed
		// out again once the kernel has ended them, not destroyed.
		logger.Info("time-wait-left", lager.Data{"slot": st.PoolSlot, "reason": err.Error()})
		notBefore = later(notBefore, m.cfg.Clock.Now().Add(TimeWaitLength))
	} else if err != nil {
		return notReturned("not-clean", err)
	}
	m.unpinNeighbour(logger, st)
	if err := errors.Join(m.hostPorts.Unfilter(ctx, st.GUID), m.hostPorts.Unmap(ctx, st.GUID, st.hostPorts())); err != nil {
		return notReturned("filter", err)
	}
	if _, err := m.conntrack.Forget(st.IPv4); err != nil {
		return notReturned("conntrack", err)
	}
	slot := poolSlot{ID: st.PoolSlot, IPv4: st.IPv4, IPv6: st.IPv6, MAC: st.MAC, NotBefore: notBefore}
	if err := m.pool.give(slot); err != nil {
		return notReturned("pool-file", err)
	}
	_, err := m.namespaces.Rename(ctx, st.NetNSName, m.poolNetNS(slot.ID))
	if _, still := m.namespaces.Path(st.NetNSName); err == nil && still {
		// Two names: a later clean-up of the old one would run CNI DEL
		// in the next container's namespace.
		err = fmt.Errorf("%s still names it after the rename", st.NetNSName)
	}
	if err != nil {
		m.pool.forget(slot.ID)
		return notReturned("rename", err)
	}
	return slot, true
}

// hasRoom says whether a returned slot would fit.
func (p *pool) hasRoom() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.recovered && len(p.file.Slots) < p.size
}

// errPoolFull: a returned slot did not fit.
var errPoolFull = errors.New("the pool is full")

// give adds a returned slot, not ready yet, at the back (claims take the
// front: the slot that waited longest goes first), and writes the file so
// that after a crash recovery knows the slot.
func (p *pool) give(slot poolSlot) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.file.Slots) >= p.size {
		return errPoolFull
	}
	slot.Ready = false
	p.file.Slots = append(p.file.Slots, slot)
	if err := p.saveLocked(); err != nil {
		p.file.Slots = p.file.Slots[:len(p.file.Slots)-1]
		return err
	}
	return nil
}

// ready makes a given slot claimable. When the file cannot be written the
// slot is claimable still; after a crash, recovery destroys it (the file
// says not ready), which is safe.
func (p *pool) ready(id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.IndexFunc(p.file.Slots, func(s poolSlot) bool { return s.ID == id })
	if i < 0 {
		return nil
	}
	p.file.Slots[i].Ready = true
	return p.saveLocked()
}

// later answers the later of two times.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
