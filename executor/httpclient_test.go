package executor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

// recorded is one request the test server saw.
type recorded struct {
	Method, Path, RawQuery, ContentType string
	Body                                []byte
}

var _ = Describe("HTTPClient", func() {
	var (
		server    *httptest.Server
		transport *http.Transport
		client    *executor.HTTPClient
		ctx       context.Context

		mu       sync.Mutex
		requests []recorded
		// respond answers every request; specs replace it.
		respond http.HandlerFunc
	)

	lastRequest := func() recorded {
		mu.Lock()
		defer mu.Unlock()
		Expect(requests).NotTo(BeEmpty())
		return requests[len(requests)-1]
	}

	answer := func(status int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		}
	}

	BeforeEach(func() {
		ctx = context.Background()
		requests = nil
		respond = answer(http.StatusOK, `{}`)
		server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			requests = append(requests, recorded{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("Content-Type"), body})
			h := respond
			mu.Unlock()
			h(w, r)
		}))
		transport = &http.Transport{}
		// A trailing slash on the base URL must not double the slash in paths.
		client = executor.NewHTTPClient(server.URL+"/", &http.Client{Transport: transport})
		DeferCleanup(func() {
			transport.CloseIdleConnections()
			server.Close()
		})
	})

	Describe("requests", func() {
		It("pings with GET /v1/ping", func() {
			Expect(client.Ping(ctx)).To(Succeed())
			r := lastRequest()
			Expect(r.Method).To(Equal("GET"))
			Expect(r.Path).To(Equal("/v1/ping"))
			Expect(r.Body).To(BeEmpty())
			Expect(r.ContentType).To(BeEmpty())
		})

		It("reads the cell state from GET /v1/state", func() {
			respond = answer(http.StatusOK, `{"cell_id":"c1","zone":"z1","evacuating":true,
				"total":{"memory_mb":1024,"disk_mb":2048,"containers":10},
				"available":{"memory_mb":512,"disk_mb":1024,"containers":9},
				"proxy_memory_overhead_mb":32,"containers":{"running":1},"nats":"connected"}`)
			st, err := client.State(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(lastRequest().Path).To(Equal("/v1/state"))
			Expect(st).To(Equal(executor.CellState{CellID: "c1", Zone: "z1", Evacuating: true,
				Total:                 executor.ResourceTotals{MemoryMB: 1024, DiskMB: 2048, Containers: 10},
				Available:             executor.ResourceTotals{MemoryMB: 512, DiskMB: 1024, Containers: 9},
				ProxyMemoryOverheadMB: 32, Containers: map[string]int{"running": 1}, NATS: "connected"}))
		})

		It("posts allocations and reads back the failures", func() {
			respond = answer(http.StatusOK, `{"failures":[{"guid":"g2","error":{"code":"InsufficientResources","message":"insufficient resources: memory"}}]}`)
			failures, err := client.Allocate(ctx, []executor.AllocationRequest{
				{GUID: "g1", Resources: executor.Resources{MemoryMB: 64}},
				{GUID: "g2", Resources: executor.Resources{MemoryMB: 4096}, Tags: map[string]string{"app": "a"}},
			})
			Expect(err).NotTo(HaveOccurred())
			r := lastRequest()
			Expect(r.Method).To(Equal("POST"))
			Expect(r.Path).To(Equal("/v1/allocations"))
			Expect(r.ContentType).To(Equal("application/json"))
			Expect(r.Body).To(MatchJSON(`{"allocations":[
				{"guid":"g1","resources":{"memory_mb":64,"disk_mb":0}},
				{"guid":"g2","resources":{"memory_mb":4096,"disk_mb":0},"tags":{"app":"a"}}]}`))
			Expect(failures).To(HaveLen(1))
			Expect(failures[0].GUID).To(Equal("g2"))
			Expect(errors.Is(failures[0].Error, executor.ErrInsufficientResources)).To(BeTrue())
			Expect(failures[0].Error.Message).To(Equal("insufficient resources: memory"))
		})

		It("runs with POST /v1/containers/{guid}/run and the request as body", func() {
			respond = answer(http.StatusAccepted, "")
			req := executor.RunRequest{Image: "preloaded:busybox", Process: executor.Process{Path: "/bin/sh", Args: []string{"-c", "sleep 1"}}}
			Expect(client.Run(ctx, "g1", req)).To(Succeed())
			r := lastRequest()
			Expect(r.Method).To(Equal("POST"))
			Expect(r.Path).To(Equal("/v1/containers/g1/run"))
			var got executor.RunRequest
			Expect(json.Unmarshal(r.Body, &got)).To(Succeed())
			Expect(got).To(Equal(req))
		})

		It("allocates and runs with PUT /v1/containers/{guid} and reads the container", func() {
			respond = answer(http.StatusCreated, `{"guid":"g1","state":"initializing","resources":{"memory_mb":128,"disk_mb":0},"ports":[],"run_result":{"failed":false,"failure_reason":"","retryable":false,"stopped":false}}`)
			req := executor.RunRequest{Resources: &executor.Resources{MemoryMB: 128}, Image: "i", Process: executor.Process{Path: "/p"}}
			c, err := client.AllocateAndRun(ctx, "g1", req)
			Expect(err).NotTo(HaveOccurred())
			r := lastRequest()
			Expect(r.Method).To(Equal("PUT"))
			Expect(r.Path).To(Equal("/v1/containers/g1"))
			Expect(r.Body).To(ContainSubstring(`"resources":{"memory_mb":128`))
			Expect(c.GUID).To(Equal("g1"))
			Expect(c.State).To(Equal(executor.StateInitializing))
		})

		It("lists with GET /v1/containers", func() {
			respond = answer(http.StatusOK, `{"containers":[{"guid":"a","state":"running"},{"guid":"b","state":"reserved"}]}`)
			cs, err := client.List(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(lastRequest().Path).To(Equal("/v1/containers"))
			Expect(cs).To(HaveLen(2))
			Expect(cs[1].State).To(Equal(executor.StateReserved))
		})

		It("gets one container with GET /v1/containers/{guid}", func() {
			respond = answer(http.StatusOK, `{"guid":"g1","state":"running","routable":true}`)
			c, err := client.Get(ctx, "g1")
			Expect(err).NotTo(HaveOccurred())
			Expect(lastRequest().Method).To(Equal("GET"))
			Expect(lastRequest().Path).To(Equal("/v1/containers/g1"))
			Expect(c.Routable).To(BeTrue())
		})

		It("stops with POST /v1/containers/{guid}/stop without a body", func() {
			respond = answer(http.StatusNoContent, "")
			Expect(client.Stop(ctx, "g1")).To(Succeed())
			r := lastRequest()
			Expect(r.Method).To(Equal("POST"))
			Expect(r.Path).To(Equal("/v1/containers/g1/stop"))
			Expect(r.Body).To(BeEmpty())
		})

		It("deletes with DELETE /v1/containers/{guid}", func() {
			respond = answer(http.StatusNoContent, "")
			Expect(client.Delete(ctx, "g1")).To(Succeed())
			Expect(lastRequest().Method).To(Equal("DELETE"))
			Expect(lastRequest().Path).To(Equal("/v1/containers/g1"))
		})

		It("escapes the guid into one path segment", func() {
			respond = answer(http.StatusNoContent, "")
			Expect(client.Delete(ctx, "../etc")).To(Succeed())
			Expect(lastRequest().Path).To(Equal("/v1/containers/..%2Fetc"))
		})
	})

	Describe("errors", func() {
		DescribeTable("decodes an API error body into an *executor.Error that errors.Is its sentinel",
			func(status int, code string, sentinel *executor.Error, call func() error) {
				respond = answer(status, fmt.Sprintf(`{"error":{"code":%q,"message":"the agent says no"}}`, code))
				err := call()
				Expect(err).To(HaveOccurred())
				Expect(errors.Is(err, sentinel)).To(BeTrue(), "%v is not %s", err, sentinel.Code)
				var e *executor.Error
				Expect(errors.As(err, &e)).To(BeTrue())
				Expect(e.Code).To(Equal(code))
				Expect(e.Status).To(Equal(status))
				Expect(e.Message).To(Equal("the agent says no"))
			},
			Entry("Get of an unknown container", http.StatusNotFound, executor.CodeContainerNotFound, executor.ErrContainerNotFound,
				func() error { _, err := client.Get(ctx, "nope"); return err }),
			Entry("Stop of an unknown container", http.StatusNotFound, executor.CodeContainerNotFound, executor.ErrContainerNotFound,
				func() error { return client.Stop(ctx, "nope") }),
			Entry("Delete of an unknown container", http.StatusNotFound, executor.CodeContainerNotFound, executor.ErrContainerNotFound,
				func() error { return client.Delete(ctx, "nope") }),
			Entry("AllocateAndRun of an existing container", http.StatusConflict, executor.CodeContainerExists, executor.ErrContainerExists,
				func() error { _, err := client.AllocateAndRun(ctx, "g1", executor.RunRequest{}); return err }),
			Entry("Run without room", http.StatusConflict, executor.CodeInsufficientResources, executor.ErrInsufficientResources,
				func() error { return client.Run(ctx, "g1", executor.RunRequest{}) }),
			Entry("Allocate while evacuating", http.StatusConflict, executor.CodeEvacuating, executor.ErrEvacuating,
				func() error { _, err := client.Allocate(ctx, nil); return err }),
			Entry("Ping without containerd", http.StatusServiceUnavailable, executor.CodeUnavailable, executor.ErrUnavailable,
				func() error { return client.Ping(ctx) }),
			Entry("State failing inside", http.StatusInternalServerError, executor.CodeInternal, executor.ErrInternal,
				func() error { _, err := client.State(ctx); return err }),
			Entry("Logs of an unknown container", http.StatusNotFound, executor.CodeContainerNotFound, executor.ErrContainerNotFound,
				func() error { _, err := client.Logs(ctx, "nope", executor.LogOptions{}); return err }),
			Entry("Events with a bad since", http.StatusBadRequest, executor.CodeInvalidRequest, executor.ErrInvalidRequest,
				func() error { _, err := client.Events(ctx, 0); return err }),
		)

		It("reports a non-API error answer with its status and body", func() {
			respond = func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusBadGateway)
				_, _ = io.WriteString(w, "  upstream is down\n")
			}
			_, err := client.Get(ctx, "g1")
			Expect(err).To(MatchError("GET /v1/containers/g1: unexpected status 502: upstream is down"))
			var e *executor.Error
			Expect(errors.As(err, &e)).To(BeFalse())
		})

		It("treats an error body without a code as a non-API answer", func() {
			respond = answer(http.StatusConflict, `{"error":{"message":"no code"}}`)
			err := client.Stop(ctx, "g1")
			Expect(err).To(MatchError(ContainSubstring("unexpected status 409")))
		})

		It("reports an answer it cannot decode", func() {
			respond = answer(http.StatusOK, `{"guid":`)
			_, err := client.Get(ctx, "g1")
			Expect(err).To(MatchError(ContainSubstring("decode GET /v1/containers/g1 answer")))
		})

		It("reports a transport failure with the method and path", func() {
			server.Close()
			err := client.Ping(ctx)
			Expect(err).To(MatchError(ContainSubstring("GET /v1/ping: ")))
		})
	})

	Describe("Logs", func() {
		It("asks for follow only when following and returns the body as it is", func() {
			respond = func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				_, _ = io.WriteString(w, "line 1\nline 2\n")
			}
			rc, err := client.Logs(ctx, "g1", executor.LogOptions{})
			Expect(err).NotTo(HaveOccurred())
			b, err := io.ReadAll(rc)
			Expect(err).NotTo(HaveOccurred())
			Expect(rc.Close()).To(Succeed())
			Expect(string(b)).To(Equal("line 1\nline 2\n"))
			Expect(lastRequest().Path).To(Equal("/v1/containers/g1/logs"))
			Expect(lastRequest().RawQuery).To(BeEmpty())

			rc, err = client.Logs(ctx, "g1", executor.LogOptions{Follow: true})
			Expect(err).NotTo(HaveOccurred())
			_, _ = io.Copy(io.Discard, rc)
			Expect(rc.Close()).To(Succeed())
			Expect(lastRequest().RawQuery).To(Equal("follow=1"))

			rc, err = client.Logs(ctx, "g1", executor.LogOptions{Follow: true, Source: executor.LogSourceProxy})
			Expect(err).NotTo(HaveOccurred())
			_, _ = io.Copy(io.Discard, rc)
			Expect(rc.Close()).To(Succeed())
			Expect(lastRequest().RawQuery).To(Equal("follow=1&source=proxy"))
		})
	})

	Describe("Events", func() {
		It("asks for events after since and delivers them in order until the stream ends", func() {
			respond = func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, ": keep-alive\n\n"+
					"id: 11\nevent: container_reserved\ndata: {\"seq\":11,\"type\":\"container_reserved\",\"guid\":\"g1\"}\n\n"+
					"id: 12\nevent: container_state_changed\ndata: {\"seq\":12,\"type\":\"container_state_changed\",\"guid\":\"g1\",\"container\":{\"guid\":\"g1\",\"state\":\"initializing\"}}\n\n")
			}
			evs, err := client.Events(ctx, 10)
			Expect(err).NotTo(HaveOccurred())
			Expect(lastRequest().Path).To(Equal("/v1/events"))
			Expect(lastRequest().RawQuery).To(Equal("since=10"))

			var got []executor.Event
			for ev := range evs {
				got = append(got, ev)
			}
			Expect(got).To(HaveLen(2))
			Expect(got[0]).To(MatchFields(11, executor.EventContainerReserved, "g1"))
			Expect(got[1]).To(MatchFields(12, executor.EventContainerState, "g1"))
			Expect(got[1].Container.State).To(Equal(executor.StateInitializing))
		})

		It("closes the channel when ctx ends while the stream stays open", func() {
			release := make(chan struct{})
			DeferCleanup(func() { close(release) })
			respond = func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, "id: 1\ndata: {\"seq\":1,\"type\":\"a\"}\n\n")
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
				case <-release:
				}
			}
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			evs, err := client.Events(cctx, 0)
			Expect(err).NotTo(HaveOccurred())
			Eventually(evs).Should(Receive(MatchFields(1, "a", "")))
			Consistently(evs, "50ms").ShouldNot(Receive())
			cancel()
			Eventually(evs).Should(BeClosed())
		})

		It("closes the channel when ctx ends while nobody reads it", func() {
			respond = func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "data: {\"seq\":1}\n\ndata: {\"seq\":2}\n\n")
			}
			cctx, cancel := context.WithCancel(ctx)
			evs, err := client.Events(cctx, 0)
			Expect(err).NotTo(HaveOccurred())
			cancel()
			// Whatever was in flight, the channel must close.
			Eventually(func() bool {
				select {
				case _, ok := <-evs:
					return !ok
				default:
					return false
				}
			}).Should(BeTrue())
		})
	})
})
