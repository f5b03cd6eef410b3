package cellinit_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cellagent/cellagent/internal/cellinit"
)

// Issue 16: the init runs the liveness checks and writes the state file
// when their answer changes, not every round: one write from passing to
// failing, one back, however many rounds ran in between.
func TestHealthChecksAreReportedWhenTheirAnswerChanges(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	go acceptAll(l)
	var status atomic.Int32
	status.Store(200)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RequestURI() != "/health?deep=1" {
			w.WriteHeader(404)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer web.Close()
	webAddr := strings.TrimPrefix(web.URL, "http://")
	s := start(t, cellinit.Config{
		App: app(`echo ready; exec sleep 100`), Proxy: []string{"/bin/sleep", "100"}, StateDir: dir,
		HealthInterval: 20 * time.Millisecond,
		HealthChecks: []cellinit.HealthCheck{{Kind: cellinit.CheckTCP, Addr: addr},
			{Kind: cellinit.CheckHTTP, Addr: webAddr, Path: "/health?deep=1"}},
	})
	s.waitLine(t, "ready")
	st := readState(t, dir, func(st cellinit.ProxyState) bool { return st.Phase == cellinit.PhaseRunning })
	if !st.HealthChecks || st.Unhealthy != "" {
		t.Fatalf("state %+v: want the checks announced, none failed", st)
	}

	status.Store(503)
	failing := readState(t, dir, func(st cellinit.ProxyState) bool { return st.Unhealthy != "" })
	if want := "http check on http://" + webAddr + "/health?deep=1: status 503"; failing.Unhealthy != want {
		t.Fatalf("unhealthy %q, want %q", failing.Unhealthy, want)
	}
	status.Store(200)
	passing := readState(t, dir, func(st cellinit.ProxyState) bool { return st.Unhealthy == "" })
	if passing.Seq != failing.Seq+1 {
		t.Fatalf("seq %d after %d: want one write for the change, none for the rounds that answered the same", passing.Seq, failing.Seq)
	}

	l.Close()
	failing = readState(t, dir, func(st cellinit.ProxyState) bool { return st.Unhealthy != "" })
	if !strings.HasPrefix(failing.Unhealthy, "tcp check on "+addr+": ") {
		t.Fatalf("unhealthy %q, want the tcp check's failure", failing.Unhealthy)
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	s.wait(t)
}

// A tls check sends the agent's ClientHello as it is and passes on a
// handshake record; an alert fails it.
func TestATLSCheckSendsTheAgentsClientHello(t *testing.T) {
	dir := t.TempDir()
	hello := []byte{22, 3, 1, 0, 3, 1, 2, 3}
	if err := os.WriteFile(filepath.Join(dir, "hello"), hello, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var answer atomic.Int32
	answer.Store(22)
	got := make(chan []byte, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b := make([]byte, len(hello))
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c, b); err == nil {
				select {
				case got <- b:
				default:
				}
				_, _ = c.Write([]byte{byte(answer.Load()), 3, 3, 0, 0})
			}
			c.Close()
		}
	}()
	s := start(t, cellinit.Config{
		App: app(`echo ready; exec sleep 100`), Proxy: []string{"/bin/sleep", "100"}, StateDir: dir,
		HealthInterval: 20 * time.Millisecond, HealthHello: filepath.Join(dir, "hello"),
		HealthChecks: []cellinit.HealthCheck{{Kind: cellinit.CheckTLS, Addr: l.Addr().String()}},
	})
	s.waitLine(t, "ready")
	select {
	case b := <-got:
		if string(b) != string(hello) {
			t.Fatalf("sent %x, want the ClientHello %x", b, hello)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no check reached the proxy")
	}
	answer.Store(21)
	st := readState(t, dir, func(st cellinit.ProxyState) bool { return st.Unhealthy != "" })
	if want := fmt.Sprintf("proxy not ready on %s: the proxy answered a ClientHello with a TLS alert", l.Addr()); st.Unhealthy != want {
		t.Fatalf("unhealthy %q, want %q", st.Unhealthy, want)
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	s.wait(t)
}

func TestHealthConfigParsesBackAndIsChecked(t *testing.T) {
	want := cellinit.Config{App: []string{"/app"}, StateDir: "/run/x", MaxRestarts: 5, HealthInterval: 30 * time.Second,
		HealthChecks: []cellinit.HealthCheck{{Kind: cellinit.CheckTCP, Addr: "10.0.0.2:8080"},
			{Kind: cellinit.CheckHTTP, Addr: "[fd00::2]:8080", Path: "/a/b?c=d"}, {Kind: cellinit.CheckTLS, Addr: "10.0.0.2:61001"}},
		HealthHello: "/run/x/health-hello"}
	got, err := cellinit.Parse(want.Args())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Fatalf("parsed %+v from %q", got, want.Args())
	}
	for _, args := range [][]string{
		{"-health-interval", "1s", "-state-dir", "/x", "--", "a"},                                   // no check
		{"-health-interval", "1s", "-health-check", "tcp:1.2.3.4:5", "--", "a"},                     // no state dir
		{"-health-interval", "1s", "-state-dir", "/x", "-health-check", "tls:1.2.3.4:5", "--", "a"}, // no ClientHello
		{"-health-check", "udp:1.2.3.4:5", "--", "a"},                                               // unknown kind
		{"-health-check", "tcp:1.2.3.4", "--", "a"},                                                 // no port
	} {
		if _, err := cellinit.Parse(args); err == nil {
			t.Errorf("Parse(%q) accepted", args)
		}
	}
}

// acceptAll accepts and closes connections until l is closed.
func acceptAll(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// Issue 16: after restarting the proxy the init runs its checks at once,
// every 250 ms, not only every interval (an hour here), until a round
// passes; then it goes back to the interval.
func TestTheChecksRunRightAfterAProxyRestartUntilTheyPass(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // refused until the test listens again
	marker := filepath.Join(dir, "first-ran")
	s := start(t, cellinit.Config{
		App:      app(`echo ready; exec sleep 100`),
		Proxy:    app(`if [ -e ` + marker + ` ]; then exec sleep 100; fi; touch ` + marker + `; exit 9`),
		StateDir: dir, MaxRestarts: 5,
		HealthInterval: time.Hour,
		HealthChecks:   []cellinit.HealthCheck{{Kind: cellinit.CheckTCP, Addr: addr}},
	})
	s.waitLine(t, "ready")
	st := readState(t, dir, func(st cellinit.ProxyState) bool {
		return st.Phase == cellinit.PhaseRunning && st.Failures == 1 && st.Unhealthy != ""
	})
	if !strings.HasPrefix(st.Unhealthy, "tcp check on "+addr+": ") {
		t.Fatalf("unhealthy %q, want the tcp check's failure", st.Unhealthy)
	}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	go acceptAll(l)
	readState(t, dir, func(st cellinit.ProxyState) bool { return st.Unhealthy == "" })
	l.Close()
	time.Sleep(time.Second)
	if st, err := cellinit.ReadState(dir); err != nil || st.Unhealthy != "" {
		t.Fatalf("state %+v (%v): want no round after one passed, until the interval", st, err)
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	s.wait(t)
}

// An HTTP check asks no "Connection: close" and closes first: a server
// that keeps the connection open sees the checker's EOF after its answer,
// so the TIME_WAIT is the checker's and not on the app's port (where it
// kept a deleted instance's namespace out of the pool).
func TestHTTPStatusClosesFirst(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	served := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			served <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		req, err := http.ReadRequest(bufio.NewReader(conn))
		if err != nil {
			served <- err
			return
		}
		if req.Close || req.Header.Get("Connection") != "" {
			served <- fmt.Errorf("the check asked Connection: %q; the server would close first", req.Header.Get("Connection"))
			return
		}
		if _, err := io.WriteString(conn, "HTTP/1.1 204 No Content\r\n\r\n"); err != nil {
			served <- err
			return
		}
		if n, err := conn.Read(make([]byte, 1)); err != io.EOF {
			served <- fmt.Errorf("read %d bytes, %v: want the checker's EOF", n, err)
			return
		}
		served <- nil
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := cellinit.HTTPStatus(conn, l.Addr().String(), "/health", "test"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// The http check reads the status line as the agent's own check
// (HTTPStatus) does, whatever bytes the app answers: a code with a
// leading tab or a NUL after it is malformed, and the state file stays
// valid UTF-8 JSON when the line is not UTF-8.
func TestAnHTTPCheckJudgesOddStatusLinesAsTheAgentDoes(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"HTTP/1.1 \t200 OK", `malformed status line "HTTP/1.1 \t200 OK"`},
		{"HTTP/1.1 200\x00junk", `malformed status line "HTTP/1.1 200\x00junk"`},
		{"\xff\xfe 200", `malformed status line "\xff\xfe 200"`},
		{"HTTP/1.1 +204 No Content", ""},
	} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				_, _ = bufio.NewReader(c).ReadString('\n')
				_, _ = io.WriteString(c, tc.line+"\r\n\r\n")
				c.Close()
			}
		}()
		dir := t.TempDir()
		s := start(t, cellinit.Config{App: app(`echo ready; exec sleep 100`), StateDir: dir, HealthInterval: 20 * time.Millisecond,
			HealthChecks: []cellinit.HealthCheck{{Kind: cellinit.CheckHTTP, Addr: l.Addr().String(), Path: "/"}}})
		s.waitLine(t, "ready")
		want := ""
		if tc.want != "" {
			want = "http check on http://" + l.Addr().String() + "/: " + tc.want
		}
		st := readState(t, dir, func(st cellinit.ProxyState) bool { return st.HealthChecks && st.Unhealthy == want && st.Seq >= 1 })
		if want == "" && st.Unhealthy != "" {
			t.Fatalf("%q: unhealthy %q", tc.line, st.Unhealthy)
		}
		b, err := os.ReadFile(filepath.Join(dir, cellinit.StateFile))
		if err != nil || !utf8.Valid(b) || !json.Valid(b) {
			t.Fatalf("%q: state file %q (%v): want valid UTF-8 JSON", tc.line, b, err)
		}
		_ = s.cmd.Process.Signal(os.Interrupt)
		s.wait(t)
		l.Close()
	}
}
