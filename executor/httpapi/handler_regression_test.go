package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/executor/httpapi"
	"github.com/cellagent/cellagent/fakes"
)

var _ = Describe("GET /v1/containers/{guid}/logs?follow=1 on a quiet container", func() {
	It("answers the headers before any output arrives", func() {
		client := &fakes.FakeClient{}
		pr, pw := io.Pipe()
		client.LogsStub = func(ctx context.Context, _ string, _ executor.LogOptions) (io.ReadCloser, error) {
			context.AfterFunc(ctx, func() { pw.Close() })
			return pr, nil
		}
		server := httptest.NewServer(httpapi.New(lagertest.NewTestLogger("httpapi"), httpapi.Config{Client: client}))
		transport := &http.Transport{}
		ctx, cancel := context.WithCancel(context.Background())
		DeferCleanup(func() {
			cancel()
			pw.Close()
			transport.CloseIdleConnections()
			server.Close()
		})

		answered := make(chan *http.Response, 1)
		go func() {
			defer GinkgoRecover()
			req, _ := http.NewRequestWithContext(ctx, "GET", server.URL+"/v1/containers/g1/logs?follow=1", nil)
			resp, err := (&http.Client{Transport: transport}).Do(req)
			if err == nil {
				answered <- resp
			}
		}()
		var resp *http.Response
		Eventually(answered, "2s").Should(Receive(&resp), "no response headers while the container prints nothing")
		defer resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
	})
})

var _ = Describe("a body with a stray closing bracket after the value", func() {
	DescribeTable("is refused as trailing garbage",
		func(trailer string) {
			client := &fakes.FakeClient{}
			handler := httpapi.New(lagertest.NewTestLogger("httpapi"), httpapi.Config{Client: client})
			w := httptest.NewRecorder()
			req := httptest.NewRequest("POST", "/v1/containers/g1/run", strings.NewReader(validRun+trailer))
			req.Header.Set("Content-Type", "application/json")
			handler.ServeHTTP(w, req)
			Expect(w.Code).To(Equal(http.StatusBadRequest), w.Body.String())
			Expect(client.RunCallCount()).To(BeZero())
		},
		Entry("}", "}"),
		Entry("]", "]"),
		Entry("} and more", "}garbage"),
	)
})
