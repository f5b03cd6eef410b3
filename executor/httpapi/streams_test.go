package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"

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
