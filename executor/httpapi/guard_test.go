package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor/httpapi"
	"github.com/cellagent/cellagent/fakes"
)

// Issue 13 item 8: a web page could drive the loopback API (a text/plain
// POST with a foreign Origin to /v1/containers/evil/run answered 202).
var _ = Describe("requests a browser could send", func() {
	var (
		client  *fakes.FakeClient
		handler http.Handler
	)
	BeforeEach(func() {
		client = &fakes.FakeClient{}
		handler = httpapi.New(lagertest.NewTestLogger("httpapi"), httpapi.Config{Client: client, Images: &stubImporter{}})
	})
	codeOf := func(w *httptest.ResponseRecorder) string {
		GinkgoHelper()
		var b struct {
			Error struct{ Code string } `json:"error"`
		}
		Expect(json.Unmarshal(w.Body.Bytes(), &b)).To(Succeed(), w.Body.String())
		return b.Error.Code
	}
	send := func(method, target, body string, header map[string]string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		return w
	}

	DescribeTable("a body that is not the endpoint's content type is refused with 415 before anything runs",
		func(method, target, body, contentType string) {
			h := map[string]string{}
			if contentType != "" {
				h["Content-Type"] = contentType
			}
			w := send(method, target, body, h)
			Expect(w.Code).To(Equal(http.StatusUnsupportedMediaType), w.Body.String())
			Expect(codeOf(w)).To(Equal("UnsupportedMediaType"))
			Expect(client.Invocations()).To(BeEmpty())
		},
		Entry("text/plain run (the CSRF form post)", "POST", "/v1/containers/evil/run", validRun, "text/plain"),
		Entry("no content type on a run body", "POST", "/v1/containers/evil/run", validRun, ""),
		Entry("urlencoded PUT", "PUT", "/v1/containers/evil", validRun, "application/x-www-form-urlencoded"),
		Entry("multipart allocations", "POST", "/v1/allocations", `{"allocations":[]}`, "multipart/form-data; boundary=x"),
		Entry("text/plain body to stop", "POST", "/v1/containers/g1/stop", "x", "text/plain"),
		Entry("text/plain body to evacuate", "POST", "/v1/evacuate", "x", "text/plain"),
		Entry("JSON to the image import", "POST", "/v1/images?name=r.example.com/a:1", "{}", "application/json"),
		Entry("text/plain image archive", "POST", "/v1/images?name=r.example.com/a:1", "tar", "text/plain"),
	)

	It("accepts application/json with parameters", func() {
		w := send("POST", "/v1/containers/g1/run", validRun, map[string]string{"Content-Type": "application/json; charset=utf-8"})
		Expect(w.Code).To(Equal(http.StatusAccepted), w.Body.String())
		Expect(client.RunCallCount()).To(Equal(1))
	})

	It("accepts a bodyless POST without a content type", func() {
		w := send("POST", "/v1/containers/g1/stop", "", nil)
		Expect(w.Code).To(Equal(http.StatusNoContent), w.Body.String())
	})

	DescribeTable("a request with an Origin header is refused with 403, whatever else it has right",
		func(method, target, body string) {
			h := map[string]string{"Origin": "http://evil.example"}
			if body != "" {
				h["Content-Type"] = "application/json"
			}
			w := send(method, target, body, h)
			Expect(w.Code).To(Equal(http.StatusForbidden), w.Body.String())
			Expect(codeOf(w)).To(Equal("Forbidden"))
			Expect(client.Invocations()).To(BeEmpty())
		},
		Entry("run", "POST", "/v1/containers/evil/run", validRun),
		Entry("stop", "POST", "/v1/containers/g1/stop", ""),
		Entry("a read", "GET", "/v1/containers", ""),
		Entry("null origin (sandboxed frame)", "DELETE", "/v1/containers/g1", ""),
	)
})

var _ = Describe("LoopbackHostOnly", func() {
	var reached int
	handler := httpapi.LoopbackHostOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ }))
	BeforeEach(func() { reached = 0 })

	DescribeTable("passes a loopback Host on",
		func(host string) {
			req := httptest.NewRequest("GET", "/v1/ping", nil)
			req.Host = host
			w := httptest.NewRecorder()
			handler.ServeHTTP(w, req)
			Expect(w.Code).To(Equal(http.StatusOK))
			Expect(reached).To(Equal(1))
		},
		Entry("127.0.0.1 with port", "127.0.0.1:1800"),
		Entry("127.0.0.1", "127.0.0.1"),
		Entry("another 127/8 address", "127.0.0.2:1800"),
		Entry("localhost", "localhost:1800"),
		Entry("LOCALHOST", "LOCALHOST"),
		Entry("::1", "[::1]:1800"),
	)

	DescribeTable("refuses any other Host with 403 (DNS rebinding)",
		func(host string) {
			req := httptest.NewRequest("GET", "/v1/ping", nil)
			req.Host = host
			w := httptest.NewRecorder()
			handler.ServeHTTP(w, req)
			Expect(w.Code).To(Equal(http.StatusForbidden), w.Body.String())
			Expect(w.Body.String()).To(ContainSubstring(`"Forbidden"`))
			Expect(reached).To(BeZero())
		},
		Entry("a rebound name", "evil.example:1800"),
		Entry("a name that starts like localhost", "localhost.evil.example:1800"),
		Entry("a routable address", "10.0.0.1:1800"),
		Entry("empty", ""),
	)
})
