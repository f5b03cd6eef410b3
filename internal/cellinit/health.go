package cellinit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// The liveness checks (issue 16). The agent's health monitoring made a
// connection per instance and interval from the host (a ClientHello to the
// proxy, the app's own check): at 500 instances most of an idle agent's
// CPU. As Diego's healthcheck process does, cellinit runs them inside the
// container every HealthInterval and writes the state file only when the
// answer changes (Unhealthy), so the agent hears of changes, not of every
// round. The checks are the agent's own: a connect (tcp), a GET answered
// 2xx without following redirects (http), and the ClientHello the agent
// made for the instance answered by a TLS handshake record (tls: the proxy
// accepts and its TLS stack answers; cellproxy dials the app before it
// answers, so that also proves the app listens). cellinit does no
// cryptography: the ClientHello is the agent's, read from HealthHello.

// Check kinds.
const (
	CheckTCP  = "tcp"
	CheckHTTP = "http"
	CheckTLS  = "tls"
)

// HealthCheck is one liveness check.
type HealthCheck struct {
	Kind string // CheckTCP, CheckHTTP or CheckTLS
	Addr string // host:port
	// Path is an http check's request URI (starts with "/").
	Path string
}

// String is the check's flag value: KIND:HOST:PORT[PATH].
func (c HealthCheck) String() string { return c.Kind + ":" + c.Addr + c.Path }

func parseCheck(s string) (HealthCheck, error) {
	kind, rest, _ := strings.Cut(s, ":")
	c := HealthCheck{Kind: kind, Addr: rest}
	if kind == CheckHTTP {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			c.Addr, c.Path = rest[:i], rest[i:]
		} else {
			c.Path = "/"
		}
		if strings.ContainsAny(c.Path, " \r\n") {
			return c, fmt.Errorf("health check %q: the path holds a space or a line break", s)
		}
	}
	switch kind {
	case CheckTCP, CheckHTTP, CheckTLS:
	default:
		return c, fmt.Errorf("health check %q: kind %q is not tcp, http or tls", s, kind)
	}
	if _, port, err := net.SplitHostPort(c.Addr); err != nil || port == "" {
		return c, fmt.Errorf("health check %q: want %s:HOST:PORT", s, kind)
	}
	return c, nil
}

// HTTPStatus sends a GET for path and accepts a 2xx status line (a 3xx is
// not followed: the check reaches the instance and nothing else). It asks
// no "Connection: close": the caller closes conn after the status line,
// before the server would, so the TCP TIME_WAIT stays with the checker's
// ephemeral port and not on the app's port, where it would keep a
// returned network namespace from being handed out for a minute
// (containerstore/network's scrubber). The agent's own HTTP check is this
// one from the host.
func HTTPStatus(conn net.Conn, host, path, userAgent string) error {
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\n\r\n", path, host, userAgent); err != nil {
		return err
	}
	line, err := bufio.NewReaderSize(io.LimitReader(conn, 4096), 4096).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no status line: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	proto, rest, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if !strings.HasPrefix(proto, "HTTP/") || err != nil {
		return fmt.Errorf("malformed status line %q", line)
	}
	if status/100 != 2 {
		return fmt.Errorf("status %d", status)
	}
	return nil
}

// TLS record content types (RFC 8446 section 5.1).
const (
	recordAlert     = 21
	recordHandshake = 22
)

// HelloAnswered sends the ClientHello record hello on conn and reads the
// header of the record that answers it: a handshake record (the
// ServerHello) passes, an alert or anything else fails. The agent's own
// probe (proxyhook) is this check from the host.
func HelloAnswered(conn net.Conn, hello []byte) error {
	if _, err := conn.Write(hello); err != nil {
		return fmt.Errorf("send ClientHello: %w", err)
	}
	var hdr [5]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return fmt.Errorf("no answer to a ClientHello: %w", err)
	}
	switch hdr[0] {
	case recordHandshake:
		return nil
	case recordAlert:
		return errors.New("the proxy answered a ClientHello with a TLS alert")
	}
	return fmt.Errorf("the proxy answered a ClientHello with a record of type %d", hdr[0])
}
