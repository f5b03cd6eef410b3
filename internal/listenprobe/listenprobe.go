// Package listenprobe asks the kernel whether a TCP connection to an IPv4
// address and port would find a listening socket, without sending a
// packet: one NETLINK_SOCK_DIAG request for that exact socket, the lookup
// the kernel makes for an arriving SYN (wildcard and dual-stack IPv6
// listeners included). The answer is a hint for a caller that polls for a
// listener; a connect stays what proves it (a filter, a full backlog or a
// listener of another namespace decide that, not this).
//
// A refused connect to a container's address costs the host a SYN and a
// reset through the veth, and a conntrack entry made and removed, on top
// of a non-blocking connect's netpoller round: ~40 us of CPU a try on
// loopback (BenchmarkRefusedConnect), ~1.4 ms per start for the ~50 tries
// a start under load makes before its app listens (issue 16's profile). A
// lookup is a send and a receive on a netlink socket, ~3 us
// (BenchmarkListening).
package listenprobe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/internal/netnsthread"
)

const (
	tcpListen = 10                     // TCP_LISTEN, the state
	noCookie  = 0xffffffff             // INET_DIAG_NOCOOKIE, each half
	reqLen    = unix.NLMSG_HDRLEN + 56 // + struct inet_diag_req_v2
)

// Probe is a netlink socket in one network namespace, for one goroutine
// at a time (a start's readiness poll owns its probe).
type Probe struct {
	fd  int
	seq uint32
	buf []byte
}

// Open makes a probe of the network namespace at netnsPath (a bind mount
// such as /var/run/netns/NAME, or /proc/PID/ns/net), or of the caller's
// own namespace for "". Another namespace than the caller's is entered by
// a thread for the socket, which needs CAP_SYS_ADMIN.
//
// The first Open of a process checks that the kernel can answer at all:
// without sock_diag for TCP (CONFIG_INET_DIAG off, tcp_diag not loadable)
// it answers every lookup as it answers one for a socket that is not
// there, which would hold every instance back until its start timeout.
// A listener of its own, on 127.0.0.1, must be found, and not once closed.
func Open(netnsPath string) (*Probe, error) {
	if err := kernelAnswers(); err != nil {
		return nil, err
	}
	return open(netnsPath)
}

var selfTest struct {
	once sync.Once
	err  error
}

func kernelAnswers() error {
	selfTest.once.Do(func() { selfTest.err = checkKernel() })
	return selfTest.err
}

func checkKernel() (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("listen probe: the kernel's TCP socket lookup (sock_diag) cannot be used: %w", err)
		}
	}()
	p, err := open("")
	if err != nil {
		return err
	}
	defer p.Close()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			unix.Close(fd)
		}
	}()
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return err
	}
	if err := unix.Listen(fd, 1); err != nil {
		return err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return err
	}
	port := uint16(sa.(*unix.SockaddrInet4).Port)
	lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if ok, err := p.Listening(lo, port); err != nil || !ok {
		return errors.Join(err, fmt.Errorf("a listener of its own on 127.0.0.1:%d was not found", port))
	}
	unix.Close(fd)
	closed = true
	if ok, err := p.Listening(lo, port); err != nil || ok {
		return errors.Join(err, fmt.Errorf("a closed listener on 127.0.0.1:%d was found", port))
	}
	return nil
}

func open(netnsPath string) (*Probe, error) {
	if netnsPath != "" {
		own, err := sameFile(netnsPath, "/proc/thread-self/ns/net")
		if err != nil {
			return nil, fmt.Errorf("listen probe: %w", err)
		}
		if own {
			netnsPath = ""
		}
	}
	fd := -1
	mk := func() (err error) {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		if err != nil {
			return fmt.Errorf("sock_diag socket: %w", err)
		}
		return nil
	}
	var err error
	if netnsPath == "" {
		err = mk()
	} else {
		err = netnsthread.At(netnsPath, mk)
		if err != nil && fd >= 0 {
			unix.Close(fd) // made, but the thread could not come back
		}
	}
	if err != nil {
		return nil, err
	}
	// A reply that does not come within a second is an error, not a hang.
	tv := unix.Timeval{Sec: 1}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sock_diag socket timeout: %w", err)
	}
	return &Probe{fd: fd, buf: make([]byte, 8192)}, nil
}

// sameFile answers whether a and b are the same file (a namespace file
// is known by its device and inode).
func sameFile(a, b string) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		return false, fmt.Errorf("stat %s: %w", a, err)
	}
	if err := unix.Stat(b, &sb); err != nil {
		return false, fmt.Errorf("stat %s: %w", b, err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}

// Close releases the socket.
func (p *Probe) Close() error {
	if p.fd < 0 {
		return nil
	}
	err := unix.Close(p.fd)
	p.fd = -1
	return err
}

// Listening answers whether a TCP socket of the probe's namespace listens
// for connections to ip:port. An error means the kernel could not tell
// (no sock_diag for TCP, a closed probe): ask by connecting instead.
func (p *Probe) Listening(ip netip.Addr, port uint16) (bool, error) {
	if !ip.Is4() {
		return false, fmt.Errorf("listen probe: %v is not an IPv4 address", ip)
	}
	if p.fd < 0 {
		return false, errors.New("listen probe: closed")
	}
	p.seq++
	req := request(p.seq, ip, port)
	if err := unix.Sendto(p.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return false, fmt.Errorf("listen probe: send: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(p.fd, p.buf, 0)
		if err != nil {
			return false, fmt.Errorf("listen probe: receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(p.buf[:n])
		if err != nil {
			return false, fmt.Errorf("listen probe: %w", err)
		}
		if found, done, err := answer(msgs, p.seq); done {
			return found, err
		}
	}
}

// request is SOCK_DIAG_BY_FAMILY without NLM_F_DUMP: the lookup of one
// socket. The kernel looks it up as a SYN from idiag_dst:idiag_dport to
// idiag_src:idiag_sport would be: remote 0.0.0.0:0 matches no connection,
// so what it finds is the listener.
func request(seq uint32, ip netip.Addr, port uint16) []byte {
	b := make([]byte, reqLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], reqLen)
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(b[8:], seq)
	r := b[unix.NLMSG_HDRLEN:]
	r[0] = unix.AF_INET
	r[1] = unix.IPPROTO_TCP
	ne.PutUint32(r[4:], 1<<tcpListen) // idiag_states
	id := r[8:]                       // struct inet_diag_sockid
	binary.BigEndian.PutUint16(id[0:], port)
	a4 := ip.As4()
	copy(id[4:], a4[:]) // idiag_src[0]; idiag_dst and idiag_dport stay 0
	ne.PutUint32(id[40:], noCookie)
	ne.PutUint32(id[44:], noCookie)
	return b
}

// answer reads the messages of one reply to the request numbered seq:
// a socket (found: a listener, or anything the lookup took for one), an
// error ENOENT (none) or another error. done is false for messages of
// another request (one a timeout gave up on).
func answer(msgs []syscall.NetlinkMessage, seq uint32) (found, done bool, err error) {
	for _, m := range msgs {
		if m.Header.Seq != seq {
			continue
		}
		switch m.Header.Type {
		case unix.SOCK_DIAG_BY_FAMILY:
			return true, true, nil
		case unix.NLMSG_ERROR:
			if len(m.Data) < 4 {
				return false, true, errors.New("listen probe: short netlink error")
			}
			errno := syscall.Errno(-int32(binary.NativeEndian.Uint32(m.Data)))
			if errno == unix.ENOENT {
				return false, true, nil
			}
			return false, true, fmt.Errorf("listen probe: %w", errno)
		default:
			return false, true, fmt.Errorf("listen probe: unexpected netlink message type %d", m.Header.Type)
		}
	}
	return false, false, nil
}
