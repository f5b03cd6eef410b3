package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/executor/httpapi"
	"github.com/cellagent/cellagent/fakes"
)

// Issue 13 item 12: event-stream subscribers had no cap.
var _ = Describe("GET /v1/events subscriber cap", func() {
	var (
		server *httptest.Server
		httpc  *http.Client
	)
	BeforeEach(func() {
		client := &fakes.FakeClient{}
		client.EventsStub = func(ctx context.Context, _ uint64) (<-chan executor.Event, error) {
			return make(chan executor.Event), nil // nothing ever happens
		}
		server = httptest.NewServer(httpapi.New(lagertest.NewTestLogger("httpapi"), httpapi.Config{Client: client, MaxEventStreams: 2}))
		transport := &http.Transport{}
		httpc = &http.Client{Transport: transport}
		DeferCleanup(func() { transport.CloseIdleConnections(); server.Close() })
	})
	open := func(ctx context.Context) *http.Response {
		GinkgoHelper()
		req, _ := http.NewRequestWithContext(ctx, "GET", server.URL+"/v1/events", nil)
		resp, err := httpc.Do(req)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(resp.Body.Close)
		return resp
	}

	It("answers 503 TooManyStreams past the cap and serves again once a stream ends", func() {
		ctx1, cancel1 := context.WithCancel(context.Background())
		defer cancel1()
		ctx2, cancel2 := context.WithCancel(context.Background())
		defer cancel2()
		Expect(open(ctx1).StatusCode).To(Equal(http.StatusOK))
		Expect(open(ctx2).StatusCode).To(Equal(http.StatusOK))

		resp := open(context.Background())
		Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
		b, _ := io.ReadAll(resp.Body)
		var body struct {
			Error struct{ Code string } `json:"error"`
		}
		Expect(json.Unmarshal(b, &body)).To(Succeed(), string(b))
		Expect(body.Error.Code).To(Equal(executor.CodeTooManyStreams))

		cancel1()
		Eventually(func() int {
			ctx, cancel := context.WithCancel(context.Background())
			DeferCleanup(cancel)
			return open(ctx).StatusCode
		}).Should(Equal(http.StatusOK))
	})
})

// The agent's SIGTERM waited up to a minute while a follower was connected:
// http.Server.Shutdown waits for open requests and a stream never ends on
// its own. A server's WithStreamsEnd channel ends its streams.
var _ = Describe("streams when the server shuts down", func() {
	var (
		server *httptest.Server
		client *executor.HTTPClient
		end    chan struct{}
		fake   *fakes.FakeClient
	)
	BeforeEach(func() {
		end = make(chan struct{})
		fake = &fakes.FakeClient{}
		fake.EventsStub = func(ctx context.Context, since uint64) (<-chan executor.Event, error) {
			ch := make(chan executor.Event, 1)
			ch <- executor.Event{Seq: since + 1, Type: executor.EventContainerState, GUID: "g1"}
			return ch, nil // then nothing, ever
		}
		fake.LogsStub = func(ctx context.Context, _ string, _ executor.LogOptions) (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			go func() {
				_, _ = pw.Write([]byte("hello\n"))
				<-ctx.Done() // a follower: only its context ends it
				pw.CloseWithError(ctx.Err())
			}()
			return pr, nil
		}
		server = httptest.NewUnstartedServer(httpapi.New(lagertest.NewTestLogger("httpapi"), httpapi.Config{Client: fake}))
		server.Config.BaseContext = func(net.Listener) context.Context {
			return httpapi.WithStreamsEnd(context.Background(), end)
		}
		server.Start()
		transport := &http.Transport{}
		client = executor.NewHTTPClient(server.URL, &http.Client{Transport: transport})
		DeferCleanup(func() { transport.CloseIdleConnections(); server.Close() })
	})

	It("ends an event stream with a stream_ended event that says where to resume", func() {
		evs, err := client.Events(context.Background(), 6)
		Expect(err).NotTo(HaveOccurred())
		Eventually(evs, 10*time.Second).Should(Receive(HaveField("Seq", uint64(7))))
		close(end)
		var last executor.Event
		Eventually(evs, 10*time.Second).Should(Receive(&last))
		Expect(last.Type).To(Equal(executor.EventStreamEnded))
		Expect(last.Seq).To(Equal(uint64(7)))
		Expect(last.Message).To(ContainSubstring("shutting down"))
		Eventually(evs, 10*time.Second).Should(BeClosed())
	})

	It("ends a followed log stream with the shutdown trailer, which the client reads as ErrAgentShutdown", func() {
		rc, err := client.Logs(context.Background(), "g1", executor.LogOptions{Follow: true})
		Expect(err).NotTo(HaveOccurred())
		defer rc.Close()
		buf := make([]byte, 6)
		_, err = io.ReadFull(rc, buf)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(buf)).To(Equal("hello\n"))
		close(end)
		_, err = io.ReadAll(rc)
		Expect(err).To(MatchError(executor.ErrAgentShutdown))
	})

	It("leaves a log stream that ends by itself an ordinary EOF", func() {
		fake.LogsStub = func(context.Context, string, executor.LogOptions) (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("done\n")), nil
		}
		rc, err := client.Logs(context.Background(), "g1", executor.LogOptions{})
		Expect(err).NotTo(HaveOccurred())
		defer rc.Close()
		b, err := io.ReadAll(rc)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(b)).To(Equal("done\n"))
	})

	It("ends a stream opened after shutdown started at once", func() {
		close(end)
		evs, err := client.Events(context.Background(), 0)
		Expect(err).NotTo(HaveOccurred())
		var got []executor.Event
		Eventually(func() bool {
			select {
			case ev, ok := <-evs:
				if ok {
					got = append(got, ev)
				}
				return !ok
			default:
				return false
			}
		}, 10*time.Second).Should(BeTrue())
		Expect(got).NotTo(BeEmpty())
		Expect(got[len(got)-1].Type).To(Equal(executor.EventStreamEnded))
	})
})

// A follower that stopped reading held the handler in a write, and
// Shutdown with it, until Shutdown's own timeout: once streams end, writes
// get a deadline.
var _ = Describe("a stream whose client stopped reading", func() {
	It("returns once the server ends its streams", func() {
		end := make(chan struct{})
		fake := &fakes.FakeClient{}
		big := strings.Repeat("x", 64<<10)
		fake.EventsStub = func(ctx context.Context, since uint64) (<-chan executor.Event, error) {
			ch := make(chan executor.Event)
			go func() {
				defer close(ch)
				for seq := since + 1; seq < since+100_000; seq++ { // bounded: ~6 GB, far past any socket buffer
					select {
					case ch <- executor.Event{Seq: seq, Type: executor.EventContainerState, GUID: "g1", Message: big}:
					case <-ctx.Done():
						return
					}
				}
			}()
			return ch, nil
		}
		api := httpapi.New(lagertest.NewTestLogger("httpapi"), httpapi.Config{Client: fake})
		returned := make(chan struct{})
		server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(returned)
			api.ServeHTTP(w, r)
		}))
		server.Config.BaseContext = func(net.Listener) context.Context {
			return httpapi.WithStreamsEnd(context.Background(), end)
		}
		server.Start()
		DeferCleanup(server.Close)

		conn, err := net.Dial("tcp", server.Listener.Addr().String())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(conn.Close)
		_, err = io.WriteString(conn, "GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		Expect(err).NotTo(HaveOccurred())
		// Never read: the server's writes fill both socket buffers and block.
		Consistently(returned, 500*time.Millisecond).ShouldNot(BeClosed())
		close(end)
		Eventually(returned, 10*time.Second).Should(BeClosed())
	})
})
