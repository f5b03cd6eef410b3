package proxyhook

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/proxyconfig"
)

// The agent's side of cellproxy's POST /secrets/reload (package proxy,
// admin.go): after rewriting the SDS files it asks the proxy to load them
// at once, and the answer says which certificate each listener now gives
// new handshakes. One local HTTP request replaces waiting for the proxy's
// poll and TLS handshakes that mostly saw the old serial (about half of
// the agent's CPU per rotation went to those handshakes and their
// retries). The proxy's admin listener is 127.0.0.1:<admin port> inside the
// container's network namespace, which the request enters for its socket.

// reloadPath is cellproxy's reload endpoint.
const reloadPath = "/secrets/reload"

// errNoReload: the proxy does not know the endpoint (Envoy, or a cellproxy
// started by an older agent and still running).
var errNoReload = errors.New("the proxy has no " + reloadPath)

// secretsReport is the JSON cellproxy answers (proxy.SecretsReport; the
// agent does not link the proxy, the field names are the contract).
type secretsReport struct {
	Listeners []struct {
		Listener     string `json:"listener"`
		Secret       string `json:"secret"`
		Version      string `json:"version"`
		SerialNumber string `json:"serial_number"`
	} `json:"listeners"`
	Errors []string `json:"errors"`
}

// maxReport bounds the answer read.
const maxReport = 64 << 10

// adminTimeout bounds one request to the admin listener (loopback: it
// answers at once or not at all).
const adminTimeout = 2 * time.Second

// reloadSecrets asks the proxy listening on 127.0.0.1:port in the network
// namespace netnsPath (empty: the agent's own, host mode) to reload its
// SDS files, and answers its report.
func reloadSecrets(ctx context.Context, netnsPath string, port uint16) (secretsReport, error) {
	var report secretsReport
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	conn, err := dialIn(ctx, netnsPath, addr)
	if err != nil {
		return report, fmt.Errorf("proxy admin %s: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+reloadPath, nil)
	if err != nil {
		return report, err
	}
	req.Close = true
	if err := req.Write(conn); err != nil {
		return report, fmt.Errorf("proxy admin %s: %w", addr, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return report, fmt.Errorf("proxy admin %s: %w", addr, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed:
		return report, errNoReload
	case resp.StatusCode != http.StatusOK:
		return report, fmt.Errorf("proxy admin %s: POST %s: %s", addr, reloadPath, resp.Status)
	}
	// A few hundred bytes per listener; the app shares the namespace and
	// could answer in the proxy's place while it is down (as it could
	// present the identity, whose key it holds, to a handshake): bounded.
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxReport)).Decode(&report); err != nil {
		return report, fmt.Errorf("proxy admin %s: POST %s: %w", addr, reloadPath, err)
	}
	return report, nil
}

// serves checks that every listener of the identity certificate serves
// serial (credmanager's hex), and that there is one.
func (r secretsReport) serves(serial string) error {
	want, ok := new(big.Int).SetString(serial, 16)
	if !ok {
		return fmt.Errorf("issued serial %q is not hex", serial)
	}
	n := 0
	for _, l := range r.Listeners {
		if l.Secret != proxyconfig.CertAndKeySecret {
			continue // the c2c listener has a certificate of its own
		}
		n++
		got, ok := new(big.Int).SetString(l.SerialNumber, 16)
		if !ok || got.Cmp(want) != 0 {
			msg := fmt.Sprintf("listener %s serves serial %s, not the issued %s", l.Listener, l.SerialNumber, serial)
			if len(r.Errors) > 0 {
				msg += " (reload: " + strings.Join(r.Errors, "; ") + ")"
			}
			return errors.New(msg)
		}
	}
	if n == 0 {
		return fmt.Errorf("the proxy reports no listener of secret %s", proxyconfig.CertAndKeySecret)
	}
	return nil
}

// hostNetNS is the agent's own network namespace, to return to after a
// socket was made in a container's: the calling thread's, which is not
// locked, and so in the agent's own (a thread switched elsewhere stays
// locked until it is back, or ends).
var hostNetNS = sync.OnceValues(func() (int, error) {
	return unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
})

// dialIn connects to addr from inside the network namespace netnsPath
// (empty: from the agent's own). The thread is switched only around the
// dial: a socket stays in the namespace it was made in.
func dialIn(ctx context.Context, netnsPath, addr string) (net.Conn, error) {
	var d net.Dialer
	if netnsPath == "" {
		return d.DialContext(ctx, "tcp", addr)
	}
	host, err := hostNetNS()
	if err != nil {
		return nil, fmt.Errorf("open the agent's network namespace: %w", err)
	}
	target, err := unix.Open(netnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", netnsPath, err)
	}
	defer unix.Close(target)

	runtime.LockOSThread()
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter network namespace %s: %w", netnsPath, err)
	}
	conn, dialErr := d.DialContext(ctx, "tcp", addr)
	if err := unix.Setns(host, unix.CLONE_NEWNET); err != nil {
		// The thread stays locked: the runtime ends it with this
		// goroutine instead of running others in the wrong namespace.
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("return to the agent's network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}
