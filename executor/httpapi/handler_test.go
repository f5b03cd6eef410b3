package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/executor/httpapi"
	"github.com/cellagent/cellagent/fakes"
)

type fakeEvacuator struct {
	calls atomic.Int32
	err   error
}

func (f *fakeEvacuator) Evacuate() error { f.calls.Add(1); return f.err }

type diegoView struct {
	state executor.DiegoState
	err   error
}

func (d *diegoView) DiegoState(context.Context) (executor.DiegoState, error) { return d.state, d.err }

const validRun = `{"image":"preloaded:busybox","process":{"path":"/bin/sh"},"ports":[8080]}`

var _ = Describe("Handler", func() {
	var (
		client    *fakes.FakeClient
		evacuator *fakeEvacuator
		cfg       httpapi.Config
		handler   http.Handler
	)

	BeforeEach(func() {
		client = &fakes.FakeClient{}
		evacuator = &fakeEvacuator{}
		cfg = httpapi.Config{Client: client, Evacuator: evacuator}
	})

	JustBeforeEach(func() {
		handler = httpapi.New(lagertest.NewTestLogger("httpapi"), cfg)
	})

	serve := func(method, target, body string) *httptest.ResponseRecorder {
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req := httptest.NewRequest(method, target, r)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		return w
	}

	// expectError checks an answer is the API's JSON error with code and
	// a message containing msg.
	expectError := func(w *httptest.ResponseRecorder, status int, code, msg string) {
		GinkgoHelper()
		Expect(w.Code).To(Equal(status), "body: %s", w.Body.String())
		Expect(w.Header().Get("Content-Type")).To(Equal("application/json"))
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		Expect(json.Unmarshal(w.Body.Bytes(), &body)).To(Succeed(), "body: %s", w.Body.String())
		Expect(body.Error.Code).To(Equal(code))
		Expect(body.Error.Message).To(ContainSubstring(msg))
	}

	noClientCalls := func() {
		GinkgoHelper()
		Expect(client.Invocations()).To(BeEmpty())
	}

	Describe("GET /v1/ping", func() {
		It("answers 200 when the client can ping", func() {
			w := serve("GET", "/v1/ping", "")
			Expect(w.Code).To(Equal(http.StatusOK))
			Expect(w.Body.String()).To(MatchJSON(`{"status":"ok"}`))
			Expect(client.PingCallCount()).To(Equal(1))
		})

		It("answers 503 Unavailable when containerd is unreachable", func() {
			client.PingReturns(errors.New("dial unix /run/containerd/containerd.sock: connect: no such file"))
			expectError(serve("GET", "/v1/ping", ""), http.StatusServiceUnavailable, "Unavailable",
				"containerd unreachable: dial unix")
		})
	})

	Describe("GET /v1/state", func() {
		It("answers the client's cell state", func() {
			client.StateReturns(executor.CellState{CellID: "c1", Zone: "z1", Containers: map[string]int{"running": 2}}, nil)
			w := serve("GET", "/v1/state", "")
			Expect(w.Code).To(Equal(http.StatusOK))
			var st executor.CellState
			Expect(json.Unmarshal(w.Body.Bytes(), &st)).To(Succeed())
			Expect(st.CellID).To(Equal("c1"))
			Expect(st.Containers).To(Equal(map[string]int{"running": 2}))
		})

		It("answers 500 with the message for an error without a code", func() {
			client.StateReturns(executor.CellState{}, errors.New("boom"))
			expectError(serve("GET", "/v1/state", ""), http.StatusInternalServerError, "InternalError", "boom")
		})

		Context("on a Diego cell", func() {
			var view *diegoView
			BeforeEach(func() {
				view = &diegoView{state: executor.DiegoState{PresenceHeld: true, BBSReachable: true,
					LRPs: map[string]int{"RUNNING": 1}, Tasks: map[string]int{}}}
				cfg.Diego = view
			})

			It("adds the Diego view", func() {
				client.StateReturns(executor.CellState{CellID: "c1"}, nil)
				w := serve("GET", "/v1/state", "")
				Expect(w.Code).To(Equal(http.StatusOK))
				Expect(w.Body.String()).To(ContainSubstring(`"diego":{"presence_held":true,"bbs_reachable":true,"evacuating":false,"lrps":{"RUNNING":1},"tasks":{}}`))
			})

			It("answers the view's error", func() {
				view.err = executor.NewError(executor.ErrUnavailable, "store down")
				expectError(serve("GET", "/v1/state", ""), http.StatusServiceUnavailable, "Unavailable", "store down")
			})
		})
	})

	Describe("POST /v1/allocations", func() {
		It("passes the allocations on and answers an empty failure list", func() {
			w := serve("POST", "/v1/allocations", `{"allocations":[
				{"guid":"g1","resources":{"memory_mb":64,"disk_mb":10},"tags":{"app":"a"}},
				{"guid":"g2","resources":{"memory_mb":32,"disk_mb":0}}]}`)
			Expect(w.Code).To(Equal(http.StatusOK))
			Expect(w.Body.String()).To(MatchJSON(`{"failures":[]}`))
			Expect(client.AllocateCallCount()).To(Equal(1))
			_, reqs := client.AllocateArgsForCall(0)
			Expect(reqs).To(Equal([]executor.AllocationRequest{
				{GUID: "g1", Resources: executor.Resources{MemoryMB: 64, DiskMB: 10}, Tags: map[string]string{"app": "a"}},
				{GUID: "g2", Resources: executor.Resources{MemoryMB: 32}},
			}))
		})

		It("answers the failures the client reports", func() {
			client.AllocateReturns([]executor.AllocationFailure{{GUID: "g2",
				Error: executor.ErrorFor(executor.NewError(executor.ErrInsufficientResources, "insufficient resources: memory"))}}, nil)
			w := serve("POST", "/v1/allocations", `{"allocations":[{"guid":"g2","resources":{"memory_mb":9999,"disk_mb":0}}]}`)
			Expect(w.Code).To(Equal(http.StatusOK))
			Expect(w.Body.String()).To(MatchJSON(`{"failures":[{"guid":"g2","error":{"code":"InsufficientResources","message":"insufficient resources: memory"}}]}`))
		})

		It("refuses an empty list without asking the client", func() {
			expectError(serve("POST", "/v1/allocations", `{"allocations":[]}`), http.StatusBadRequest, "InvalidRequest", "allocations must not be empty")
			noClientCalls()
		})

		It("answers the client's error with its code", func() {
			client.AllocateReturns(nil, executor.NewError(executor.ErrEvacuating, "cell c1 is evacuating"))
			expectError(serve("POST", "/v1/allocations", `{"allocations":[{"guid":"g1","resources":{"memory_mb":1,"disk_mb":0}}]}`),
				http.StatusConflict, "Evacuating", "cell c1 is evacuating")
		})
	})

	Describe("GET /v1/containers", func() {
		It("answers the containers under a key", func() {
			client.ListReturns([]executor.Container{{GUID: "a", State: executor.StateRunning}}, nil)
			w := serve("GET", "/v1/containers", "")
			Expect(w.Code).To(Equal(http.StatusOK))
			var body struct{ Containers []executor.Container }
			Expect(json.Unmarshal(w.Body.Bytes(), &body)).To(Succeed())
			Expect(body.Containers).To(HaveLen(1))
			Expect(body.Containers[0].State).To(Equal(executor.StateRunning))
		})
	})

	Describe("GET /v1/containers/{guid}", func() {
		It("answers the container", func() {
			client.GetReturns(executor.Container{GUID: "g1", State: executor.StateCreated}, nil)
			w := serve("GET", "/v1/containers/g1", "")
			Expect(w.Code).To(Equal(http.StatusOK))
			Expect(w.Body.String()).To(ContainSubstring(`"state":"created"`))
			_, guid := client.GetArgsForCall(0)
			Expect(guid).To(Equal("g1"))
		})

		It("answers 404 ContainerNotFound for an unknown container", func() {
			client.GetReturns(executor.Container{}, fmt.Errorf("get: %w", executor.NewError(executor.ErrContainerNotFound, "container nope not found")))
			expectError(serve("GET", "/v1/containers/nope", ""), http.StatusNotFound, "ContainerNotFound", "get: container nope not found")
		})
	})

	DescribeTable("refuses a guid that is not safe as a directory name, without calling the client",
		func(method, target, body string) {
			expectError(serve(method, target, body), http.StatusBadRequest, "InvalidRequest", "invalid guid")
			noClientCalls()
		},
		Entry("GET with an encoded parent directory", "GET", "/v1/containers/..%2Fetc", ""),
		Entry("PUT with an encoded parent directory", "PUT", "/v1/containers/..%2Fetc", validRun),
		Entry("run with an encoded slash", "POST", "/v1/containers/a%2Fb/run", validRun),
		Entry("stop with a leading dash", "POST", "/v1/containers/-rf/stop", ""),
		Entry("DELETE with an encoded parent directory", "DELETE", "/v1/containers/..%2F..%2Fvar", ""),
		Entry("logs with unicode", "GET", "/v1/containers/caf%C3%A9/logs", ""),
		Entry("GET with a 129-character guid", "GET", "/v1/containers/"+strings.Repeat("a", 129), ""),
	)

	Describe("PUT /v1/containers/{guid}", func() {
		It("passes the decoded request on and answers 201 with the container", func() {
			client.AllocateAndRunReturns(executor.Container{GUID: "g1", State: executor.StateInitializing}, nil)
			w := serve("PUT", "/v1/containers/g1", `{"resources":{"memory_mb":128,"disk_mb":0},"image":"preloaded:busybox",
				"process":{"path":"/app/server","env":["K=V"]},"ports":[8080],"start_timeout":"30s"}`)
			Expect(w.Code).To(Equal(http.StatusCreated))
			Expect(w.Body.String()).To(ContainSubstring(`"state":"initializing"`))
			_, guid, req := client.AllocateAndRunArgsForCall(0)
			Expect(guid).To(Equal("g1"))
			Expect(req.Resources).To(Equal(&executor.Resources{MemoryMB: 128}))
			Expect(req.Process.Env).To(Equal([]string{"K=V"}))
			Expect(time.Duration(req.StartTimeout)).To(Equal(30 * time.Second))
		})

		DescribeTable("answers the client's errors with their codes",
			func(err error, status int, code string) {
				client.AllocateAndRunReturns(executor.Container{}, err)
				expectError(serve("PUT", "/v1/containers/g1", validRun), status, code, "")
			},
			Entry("exists", executor.ErrContainerExists, http.StatusConflict, "ContainerExists"),
			Entry("no room", fmt.Errorf("reserve: %w", executor.ErrInsufficientResources), http.StatusConflict, "InsufficientResources"),
			Entry("invalid", executor.NewError(executor.ErrInvalidRequest, "image not found"), http.StatusBadRequest, "InvalidRequest"),
			Entry("evacuating", executor.ErrEvacuating, http.StatusConflict, "Evacuating"),
		)
	})

	Describe("request bodies", func() {
		DescribeTable("are decoded strictly; a bad one is refused before the client is called",
			func(method, target, body string, status int, code, msg string) {
				expectError(serve(method, target, body), status, code, msg)
				noClientCalls()
			},
			Entry("unknown field in a run request", "PUT", "/v1/containers/g1",
				`{"image":"i","process":{"path":"/p"},"superuser":true}`, 400, "InvalidRequest", `unknown field "superuser"`),
			Entry("unknown nested field", "POST", "/v1/containers/g1/run",
				`{"image":"i","process":{"path":"/p","cwd":"/"}}`, 400, "InvalidRequest", `unknown field "cwd"`),
			Entry("unknown field in allocations", "POST", "/v1/allocations",
				`{"allocations":[{"guid":"g1","resources":{"memory_mb":1}}],"force":true}`, 400, "InvalidRequest", `unknown field "force"`),
			Entry("empty body", "PUT", "/v1/containers/g1", "", 400, "InvalidRequest", "request body is empty"),
			Entry("empty allocations body", "POST", "/v1/allocations", "", 400, "InvalidRequest", "request body is empty"),
			Entry("trailing garbage", "PUT", "/v1/containers/g1", validRun+` xyz`, 400, "InvalidRequest", "invalid JSON body"),
			Entry("a second value", "POST", "/v1/containers/g1/run", validRun+validRun, 400, "InvalidRequest", "more than one value"),
			Entry("truncated JSON", "PUT", "/v1/containers/g1", `{"image":"i",`, 400, "InvalidRequest", "invalid JSON body"),
			Entry("wrong type", "PUT", "/v1/containers/g1", `{"image":7}`, 400, "InvalidRequest", "invalid JSON body"),
			Entry("a bad duration", "PUT", "/v1/containers/g1", `{"image":"i","stop_grace":"forever"}`, 400, "InvalidRequest", "invalid JSON body"),
			Entry("over 1 MiB inside the value", "PUT", "/v1/containers/g1",
				`{"image":"`+strings.Repeat("x", httpapi.MaxBodyBytes)+`"}`, 413, "RequestTooLarge", "larger than 1048576 bytes"),
			Entry("over 1 MiB after the value", "POST", "/v1/containers/g1/run",
				validRun+strings.Repeat(" ", httpapi.MaxBodyBytes), 413, "RequestTooLarge", "larger than 1048576 bytes"),
		)

		It("accepts a body of exactly 1 MiB", func() {
			body := validRun + strings.Repeat(" ", httpapi.MaxBodyBytes-len(validRun))
			Expect(body).To(HaveLen(httpapi.MaxBodyBytes))
			w := serve("POST", "/v1/containers/g1/run", body)
			Expect(w.Code).To(Equal(http.StatusAccepted), w.Body.String())
			Expect(client.RunCallCount()).To(Equal(1))
		})
	})

	Describe("POST /v1/containers/{guid}/run", func() {
		It("answers 202 once the client accepted the run", func() {
			w := serve("POST", "/v1/containers/g1/run", validRun)
			Expect(w.Code).To(Equal(http.StatusAccepted))
			_, guid, req := client.RunArgsForCall(0)
			Expect(guid).To(Equal("g1"))
			Expect(req.Image).To(Equal("preloaded:busybox"))
			Expect(req.Ports).To(Equal([]uint16{8080}))
		})

		It("answers 409 InvalidTransition for a container that is not reserved", func() {
			client.RunReturns(fmt.Errorf("container g1: %w: running->initializing", executor.ErrInvalidTransition))
			expectError(serve("POST", "/v1/containers/g1/run", validRun), http.StatusConflict, "InvalidTransition", "running->initializing")
		})
	})

	Describe("POST /v1/containers/{guid}/stop", func() {
		It("answers 204", func() {
			w := serve("POST", "/v1/containers/g1/stop", "")
			Expect(w.Code).To(Equal(http.StatusNoContent))
			Expect(w.Body.Len()).To(BeZero())
			_, guid := client.StopArgsForCall(0)
			Expect(guid).To(Equal("g1"))
		})

		It("answers 404 for an unknown container", func() {
			client.StopReturns(executor.ErrContainerNotFound)
			expectError(serve("POST", "/v1/containers/g1/stop", ""), http.StatusNotFound, "ContainerNotFound", "container not found")
		})

		It("answers 503 when the agent is shutting down", func() {
			client.StopReturns(executor.NewError(executor.ErrUnavailable, "agent is shutting down"))
			expectError(serve("POST", "/v1/containers/g1/stop", ""), http.StatusServiceUnavailable, "Unavailable", "shutting down")
		})
	})

	Describe("DELETE /v1/containers/{guid}", func() {
		It("answers 204", func() {
			w := serve("DELETE", "/v1/containers/g1", "")
			Expect(w.Code).To(Equal(http.StatusNoContent))
			_, guid := client.DeleteArgsForCall(0)
			Expect(guid).To(Equal("g1"))
		})

		It("answers 500 with the joined teardown failure", func() {
			client.DeleteReturns(fmt.Errorf("delete g1 (retry the delete): %w", errors.Join(errors.New("network: busy"), errors.New("proxy: busy"))))
			expectError(serve("DELETE", "/v1/containers/g1", ""), http.StatusInternalServerError, "InternalError", "network: busy\nproxy: busy")
		})
	})

	Describe("POST /v1/evacuate", func() {
		It("starts the evacuation and answers 202", func() {
			w := serve("POST", "/v1/evacuate", "")
			Expect(w.Code).To(Equal(http.StatusAccepted))
			Expect(evacuator.calls.Load()).To(BeEquivalentTo(1))
		})

		It("answers the evacuator's error", func() {
			evacuator.err = executor.NewError(executor.ErrEvacuating, "already evacuating")
			expectError(serve("POST", "/v1/evacuate", ""), http.StatusConflict, "Evacuating", "already evacuating")
		})

		Context("without an evacuator", func() {
			BeforeEach(func() { cfg.Evacuator = nil })

			It("answers 503", func() {
				expectError(serve("POST", "/v1/evacuate", ""), http.StatusServiceUnavailable, "Unavailable", "evacuation is not available")
			})
		})
	})

	Describe("routing", func() {
		DescribeTable("answers 404 with a JSON error for what is not an endpoint",
			func(method, target string) {
				expectError(serve(method, target, ""), http.StatusNotFound, "ContainerNotFound", "no such endpoint: "+method)
				noClientCalls()
			},
			Entry("an unknown path", "GET", "/v2/containers"),
			Entry("the root", "GET", "/"),
			Entry("a known path with another method", "PATCH", "/v1/containers/g1"),
			Entry("a sub-resource that does not exist", "GET", "/v1/containers/g1/files"),
		)

		Context("with extra handlers", func() {
			BeforeEach(func() {
				cfg.Extra = map[string]http.Handler{"GET /metrics": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.WriteString(w, "# metrics\n")
				})}
			})

			It("mounts them as they are", func() {
				w := serve("GET", "/metrics", "")
				Expect(w.Code).To(Equal(http.StatusOK))
				Expect(w.Body.String()).To(Equal("# metrics\n"))
			})
		})
	})

	Describe("streaming endpoints", func() {
		var (
			server    *httptest.Server
			transport *http.Transport
			httpc     *http.Client
		)

		JustBeforeEach(func() {
			server = httptest.NewServer(handler)
			transport = &http.Transport{}
			httpc = &http.Client{Transport: transport}
			DeferCleanup(func() {
				transport.CloseIdleConnections()
				server.Close()
			})
		})

		get := func(ctx context.Context, path string, header http.Header) *http.Response {
			GinkgoHelper()
			req, err := http.NewRequestWithContext(ctx, "GET", server.URL+path, nil)
			Expect(err).NotTo(HaveOccurred())
			for k, v := range header {
				req.Header[k] = v
			}
			resp, err := httpc.Do(req)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(resp.Body.Close)
			return resp
		}

		// lines reads the body line by line onto a channel.
		lines := func(body io.Reader) <-chan string {
			ch := make(chan string, 100)
			go func() {
				defer close(ch)
				sc := bufio.NewScanner(body)
				for sc.Scan() {
					ch <- sc.Text()
				}
			}()
			return ch
		}

		Describe("GET /v1/events", func() {
			var events chan executor.Event

			BeforeEach(func() {
				events = make(chan executor.Event)
				client.EventsReturns(events, nil)
			})

			It("writes each event as id, event and data lines and stops when the client goes away", func() {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				resp := get(ctx, "/v1/events?since=41", nil)
				Expect(resp.StatusCode).To(Equal(http.StatusOK))
				Expect(resp.Header.Get("Content-Type")).To(Equal("text/event-stream"))
				Expect(resp.Header.Get("Cache-Control")).To(Equal("no-cache"))
				Expect(client.EventsCallCount()).To(Equal(1))
				clientCtx, since := client.EventsArgsForCall(0)
				Expect(since).To(BeEquivalentTo(41))

				out := lines(resp.Body)
				ev := executor.Event{Seq: 42, Type: executor.EventContainerState, GUID: "g1",
					Container: &executor.Container{GUID: "g1", State: executor.StateRunning}}
				events <- ev
				Eventually(out).Should(Receive(Equal("id: 42")))
				Expect(<-out).To(Equal("event: container_state_changed"))
				data := <-out
				Expect(data).To(HavePrefix("data: "))
				var back executor.Event
				Expect(json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &back)).To(Succeed())
				Expect(back.Seq).To(BeEquivalentTo(42))
				Expect(back.Container.State).To(Equal(executor.StateRunning))
				Eventually(out).Should(Receive(Equal("")))

				events <- executor.Event{Seq: 43, Type: executor.EventContainerDeleted, GUID: "g1"}
				Eventually(out).Should(Receive(Equal("id: 43")))

				cancel()
				Eventually(clientCtx.Done()).Should(BeClosed())
			})

			It("ends the stream when the client's channel closes", func() {
				resp := get(context.Background(), "/v1/events", nil)
				Expect(resp.StatusCode).To(Equal(http.StatusOK))
				_, since := client.EventsArgsForCall(0)
				Expect(since).To(BeZero())
				close(events)
				b, err := io.ReadAll(resp.Body)
				Expect(err).NotTo(HaveOccurred())
				Expect(b).To(BeEmpty())
			})

			It("resumes from Last-Event-ID when there is no since", func() {
				resp := get(context.Background(), "/v1/events", http.Header{"Last-Event-Id": {"1700000000000007"}})
				Expect(resp.StatusCode).To(Equal(http.StatusOK))
				_, since := client.EventsArgsForCall(0)
				Expect(since).To(BeEquivalentTo(uint64(1700000000000007)))
				close(events)
			})

			It("prefers since over Last-Event-ID", func() {
				resp := get(context.Background(), "/v1/events?since=5", http.Header{"Last-Event-Id": {"9"}})
				Expect(resp.StatusCode).To(Equal(http.StatusOK))
				_, since := client.EventsArgsForCall(0)
				Expect(since).To(BeEquivalentTo(5))
				close(events)
			})

			DescribeTable("refuses a since that is not a sequence number",
				func(query string, header http.Header) {
					req := httptest.NewRequest("GET", "/v1/events"+query, nil)
					for k, v := range header {
						req.Header[k] = v
					}
					w := httptest.NewRecorder()
					handler.ServeHTTP(w, req)
					expectError(w, http.StatusBadRequest, "InvalidRequest", "since must be a sequence number")
					noClientCalls()
				},
				Entry("letters", "?since=abc", nil),
				Entry("negative", "?since=-1", nil),
				Entry("beyond uint64", "?since=18446744073709551616", nil),
				Entry("a bad Last-Event-ID", "", http.Header{"Last-Event-Id": {"x1"}}),
			)

			It("answers the client's error before streaming", func() {
				client.EventsReturns(nil, executor.NewError(executor.ErrUnavailable, "no events"))
				resp := get(context.Background(), "/v1/events", nil)
				Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
			})

			Context("when idle", func() {
				BeforeEach(func() { cfg.Heartbeat = 20 * time.Millisecond })

				It("sends keep-alive comments", func() {
					resp := get(context.Background(), "/v1/events", nil)
					out := lines(resp.Body)
					Eventually(out).Should(Receive(Equal(": keep-alive")))
					close(events)
				})
			})
		})

		Describe("GET /v1/containers/{guid}/logs", func() {
			It("streams output as it comes and closes the reader at the end", func() {
				pr, pw := io.Pipe()
				closed := make(chan struct{})
				client.LogsStub = func(ctx context.Context, _ string, _ executor.LogOptions) (io.ReadCloser, error) {
					// Like the store's follow reader: it ends with the request.
					context.AfterFunc(ctx, func() { pw.Close() })
					return &notifyCloser{Reader: pr, closed: closed}, nil
				}
				// Output is waiting before the request: see handler_bug_test.go
				// for a quiet container.
				go func() { _, _ = io.WriteString(pw, "first line\n") }()
				resp := get(context.Background(), "/v1/containers/g1/logs?follow=1", nil)
				Expect(resp.StatusCode).To(Equal(http.StatusOK))
				Expect(resp.Header.Get("Content-Type")).To(Equal("text/plain; charset=utf-8"))
				Expect(resp.Header.Get("X-Content-Type-Options")).To(Equal("nosniff"))
				_, guid, opts := client.LogsArgsForCall(0)
				Expect(guid).To(Equal("g1"))
				Expect(opts).To(Equal(executor.LogOptions{Follow: true}))

				out := lines(resp.Body)
				Eventually(out).Should(Receive(Equal("first line")))
				_, _ = io.WriteString(pw, "second line\n")
				Eventually(out).Should(Receive(Equal("second line")))
				pw.Close()
				Eventually(out).Should(BeClosed())
				Eventually(closed).Should(BeClosed())
			})

			DescribeTable("reads follow and source from the query",
				func(query string, want executor.LogOptions) {
					client.LogsReturns(io.NopCloser(strings.NewReader("x")), nil)
					w := serve("GET", "/v1/containers/g1/logs"+query, "")
					Expect(w.Code).To(Equal(http.StatusOK))
					Expect(w.Body.String()).To(Equal("x"))
					_, _, got := client.LogsArgsForCall(0)
					Expect(got).To(Equal(want))
				},
				Entry("absent", "", executor.LogOptions{}),
				Entry("1", "?follow=1", executor.LogOptions{Follow: true}),
				Entry("true", "?follow=true", executor.LogOptions{Follow: true}),
				Entry("0", "?follow=0", executor.LogOptions{}),
				Entry("yes is not a value we know", "?follow=yes", executor.LogOptions{}),
				Entry("the proxy's output", "?source=proxy&follow=1", executor.LogOptions{Follow: true, Source: "proxy"}),
				Entry("the app's output", "?source=app", executor.LogOptions{Source: "app"}),
				Entry("both", "?source=all", executor.LogOptions{Source: "all"}),
			)

			It("answers 400 for an unknown source and does not read anything", func() {
				expectError(serve("GET", "/v1/containers/g1/logs?source=../app", ""), http.StatusBadRequest, "InvalidRequest", "source")
				Expect(client.LogsCallCount()).To(BeZero())
			})

			It("answers 404 for an unknown container", func() {
				client.LogsReturns(nil, executor.NewError(executor.ErrContainerNotFound, "container g9 not found"))
				expectError(serve("GET", "/v1/containers/g9/logs", ""), http.StatusNotFound, "ContainerNotFound", "g9")
			})
		})
	})

	Describe("with the HTTP client on the other end", func() {
		It("brings API errors back as the same sentinels", func() {
			server := httptest.NewServer(handler)
			transport := &http.Transport{}
			defer transport.CloseIdleConnections()
			defer server.Close()
			c := executor.NewHTTPClient(server.URL, &http.Client{Transport: transport})

			client.GetReturns(executor.Container{}, executor.NewError(executor.ErrContainerNotFound, "container g1 not found"))
			_, err := c.Get(context.Background(), "g1")
			Expect(errors.Is(err, executor.ErrContainerNotFound)).To(BeTrue())
			Expect(err).To(MatchError("container g1 not found"))

			err = c.Delete(context.Background(), "../etc")
			Expect(errors.Is(err, executor.ErrInvalidRequest)).To(BeTrue())
			Expect(client.DeleteCallCount()).To(BeZero())

			client.AllocateReturns([]executor.AllocationFailure{{GUID: "g2", Error: executor.ErrorFor(executor.ErrContainerExists)}}, nil)
			failures, err := c.Allocate(context.Background(), []executor.AllocationRequest{{GUID: "g2", Resources: executor.Resources{MemoryMB: 1}}})
			Expect(err).NotTo(HaveOccurred())
			Expect(failures).To(HaveLen(1))
			Expect(errors.Is(failures[0].Error, executor.ErrContainerExists)).To(BeTrue())
		})
	})
})

type notifyCloser struct {
	io.Reader
	closed chan struct{}
}

func (n *notifyCloser) Close() error { close(n.closed); return nil }
