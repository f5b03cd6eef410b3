package httpapi_test

import (
	"context"
	"encoding/json"
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

type fakeFilters struct {
	set   [][]executor.EgressRule
	guids []string
	err   error
}

func (f *fakeFilters) SetEgress(_ context.Context, guid string, rules []executor.EgressRule) (executor.NetworkFilter, error) {
	f.guids, f.set = append(f.guids, guid), append(f.set, rules)
	return executor.NetworkFilter{GUID: guid, EgressRules: rules}, f.err
}

func (f *fakeFilters) NetworkFilter(_ context.Context, guid string) (executor.NetworkFilter, error) {
	return executor.NetworkFilter{GUID: guid, Denied: map[string]uint64{"egress": 3}}, f.err
}

var _ = Describe("PUT /v1/containers/{guid}/egress", func() {
	var filters *fakeFilters

	serve := func(cfg httpapi.Config, method, target, body string) *httptest.ResponseRecorder {
		h := httpapi.New(lagertest.NewTestLogger("httpapi"), cfg)
		w := httptest.NewRecorder()
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json") // as the HTTP client sends it
		h.ServeHTTP(w, req)
		return w
	}
	BeforeEach(func() { filters = &fakeFilters{} })

	It("hands the rules to the network filters and answers the new filter", func() {
		w := serve(httpapi.Config{Client: &fakes.FakeClient{}, Network: filters}, "PUT", "/v1/containers/g1/egress",
			`{"egress_rules":[{"protocol":"tcp","destinations":["10.0.0.0/8"],"ports":"443"}]}`)
		Expect(w.Code).To(Equal(http.StatusOK), w.Body.String())
		Expect(filters.guids).To(Equal([]string{"g1"}))
		Expect(filters.set[0]).To(Equal([]executor.EgressRule{{Protocol: "tcp", Destinations: []string{"10.0.0.0/8"}, Ports: "443"}}))
		var f executor.NetworkFilter
		Expect(json.Unmarshal(w.Body.Bytes(), &f)).To(Succeed())
		Expect(f.GUID).To(Equal("g1"))
	})

	DescribeTable("refuses without calling the filters",
		func(target, body string, status int, code string) {
			w := serve(httpapi.Config{Client: &fakes.FakeClient{}, Network: filters}, "PUT", target, body)
			Expect(w.Code).To(Equal(status), w.Body.String())
			Expect(w.Body.String()).To(ContainSubstring(code))
			Expect(filters.set).To(BeEmpty())
		},
		Entry("unknown field", "/v1/containers/g1/egress", `{"rules":[]}`, 400, "InvalidRequest"),
		Entry("not JSON", "/v1/containers/g1/egress", `{"egress_rules":`, 400, "InvalidRequest"),
		Entry("bad guid", "/v1/containers/..%2Fx/egress", `{"egress_rules":[]}`, 400, "InvalidRequest"),
	)

	It("passes the filters' errors through", func() {
		filters.err = executor.NewError(executor.ErrInvalidRequest, "egress_rules[0].destinations[0]: bad")
		w := serve(httpapi.Config{Client: &fakes.FakeClient{}, Network: filters}, "PUT", "/v1/containers/g1/egress", `{"egress_rules":[]}`)
		Expect(w.Code).To(Equal(http.StatusBadRequest))
		Expect(w.Body.String()).To(ContainSubstring("destinations[0]: bad"))
	})

	It("answers Unavailable on an agent without filters", func() {
		w := serve(httpapi.Config{Client: &fakes.FakeClient{}}, "PUT", "/v1/containers/g1/egress", `{"egress_rules":[]}`)
		Expect(w.Code).To(Equal(http.StatusServiceUnavailable))
		w = serve(httpapi.Config{Client: &fakes.FakeClient{}}, "GET", "/v1/containers/g1/network", "")
		Expect(w.Code).To(Equal(http.StatusServiceUnavailable))
	})

	It("shows the filter with its denial counts", func() {
		w := serve(httpapi.Config{Client: &fakes.FakeClient{}, Network: filters}, "GET", "/v1/containers/g1/network", "")
		Expect(w.Code).To(Equal(http.StatusOK))
		Expect(w.Body.String()).To(ContainSubstring(`"egress":3`))
	})
})
