package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/rep/api"
	"github.com/cellagent/cellagent/rep/api/apifakes"
)

var _ = Describe("rep API", func() {
	var (
		cell    *apifakes.FakeCell
		handler http.Handler
	)

	BeforeEach(func() {
		cell = &apifakes.FakeCell{}
		handler = api.New(lagertest.NewTestLogger("api"), cell)
	})

	do := func(method, path, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec
	}

	It("serves /state in the form the auctioneer reads", func() {
		cell.StateReturns(api.CellState{CellID: "cell-1", RootFSProviders: api.RootFSProviders{"preloaded": {"cflinuxfs4"}, "docker": nil},
			AvailableResources: api.Resources{MemoryMB: 100, DiskMB: 200, Containers: 3},
			LRPs:               []api.LRP{{InstanceGUID: "ig", ProcessGUID: "pg", Index: 2, Domain: "d", Resource: api.Resource{MemoryMB: 64}, State: "RUNNING"}}}, nil)
		rec := do("GET", "/state", "")
		Expect(rec.Code).To(Equal(http.StatusOK))
		var got map[string]any
		Expect(json.Unmarshal(rec.Body.Bytes(), &got)).To(Succeed())
		Expect(got["cell_id"]).To(Equal("cell-1"))
		Expect(got["RootFSProviders"]).To(Equal(map[string]any{
			"preloaded": map[string]any{"type": "fixed_set", "set": map[string]any{"cflinuxfs4": map[string]any{}}},
			"docker":    map[string]any{"type": "arbitrary"}}))
		Expect(got["AvailableResources"]).To(Equal(map[string]any{"MemoryMB": 100.0, "DiskMB": 200.0, "Containers": 3.0}))
		Expect(got["LRPs"]).To(ConsistOf(HaveKeyWithValue("process_guid", "pg")))
		Expect(got["LRPs"].([]any)[0]).To(HaveKeyWithValue("instance_guid", "ig"))
		Expect(got["LRPs"].([]any)[0]).To(HaveKeyWithValue("MemoryMB", 64.0))
	})

	It("decodes /work as rep.Work and answers the failed work", func() {
		body := `{"LRPs":[{"instance_guid":"","process_guid":"pg","index":1,"domain":"d","PlacementTags":null,
			"VolumeDrivers":null,"RootFs":"preloaded:cflinuxfs4","MemoryMB":64,"DiskMB":128,"MaxPids":0,"state":""}],
			"Tasks":[{"TaskGuid":"t-1","Domain":"d","PlacementTags":null,"VolumeDrivers":null,"RootFs":"preloaded:cflinuxfs4",
			"MemoryMB":32,"DiskMB":32,"MaxPids":0,"state":"Invalid","failed":false}],"cell_id":"cell-1"}`
		cell.PerformCalls(func(_ context.Context, w api.Work) (api.Work, error) {
			return api.Work{LRPs: w.LRPs, Tasks: w.Tasks}, nil
		})
		rec := do("POST", "/work", body)
		Expect(rec.Code).To(Equal(http.StatusOK))
		_, w := cell.PerformArgsForCall(0)
		Expect(w.CellID).To(Equal("cell-1"))
		Expect(w.LRPs).To(Equal([]api.LRP{{ProcessGUID: "pg", Index: 1, Domain: "d",
			PlacementConstraint: api.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"}, Resource: api.Resource{MemoryMB: 64, DiskMB: 128}}}))
		Expect(w.Tasks).To(Equal([]api.Task{{TaskGuid: "t-1", Domain: "d",
			PlacementConstraint: api.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"}, Resource: api.Resource{MemoryMB: 32, DiskMB: 32}}}))
		var failed api.Work
		Expect(json.Unmarshal(rec.Body.Bytes(), &failed)).To(Succeed())
		Expect(failed.LRPs).To(HaveLen(1))
		Expect(rec.Body.String()).To(ContainSubstring(`"state":"Invalid"`))
	})

	It("answers 400 for a body that is not JSON, without performing anything", func() {
		Expect(do("POST", "/work", "{").Code).To(Equal(http.StatusBadRequest))
		Expect(cell.PerformCallCount()).To(BeZero())
	})

	It("accepts a stop with 202 and answers 404 for an unknown instance", func() {
		Expect(do("POST", "/v1/lrps/pg/instances/ig/stop", "").Code).To(Equal(http.StatusAccepted))
		_, pg, ig := cell.StopLRPArgsForCall(0)
		Expect([]string{pg, ig}).To(Equal([]string{"pg", "ig"}))
		cell.StopLRPReturns(fmt.Errorf("%w: instance x", api.ErrNotFound))
		Expect(do("POST", "/v1/lrps/pg/instances/x/stop", "").Code).To(Equal(http.StatusNotFound))
	})

	It("decodes rep.LRPUpdate on PUT /v2 and /v1, names the instance from the path, and answers 202", func() {
		body := `{"instance_guid":"ig","process_guid":"pg","index":1,"domain":"d",
			"internal_routes":[{"hostname":"a.apps.internal"}],"metric_tags":{"source_id":"s"}}`
		Expect(do("PUT", "/v2/lrps/pg/instances/ig", body).Code).To(Equal(http.StatusAccepted))
		_, u := cell.UpdateLRPArgsForCall(0)
		Expect(u).To(Equal(api.LRPUpdate{InstanceGUID: "ig", ProcessGUID: "pg", Index: 1, Domain: "d",
			InternalRoutes: []api.InternalRoute{{Hostname: "a.apps.internal"}}, MetricTags: map[string]string{"source_id": "s"}}))
		Expect(do("PUT", "/v1/lrps/pg/instances/ig", `{"metric_tags":null}`).Code).To(Equal(http.StatusAccepted))
		_, u = cell.UpdateLRPArgsForCall(1)
		Expect(u.InstanceGUID).To(Equal("ig"))

		rec := do("PUT", "/v2/lrps/pg/instances/ig", `{"instance_guid":"other"}`)
		Expect(rec.Code).To(Equal(http.StatusBadRequest))
		Expect(rec.Body.String()).To(ContainSubstring("body names"))
		Expect(do("PUT", "/v2/lrps/pg/instances/ig", `{`).Code).To(Equal(http.StatusBadRequest))
		cell.UpdateLRPReturns(fmt.Errorf("%w: instance x", api.ErrNotFound))
		Expect(do("PUT", "/v2/lrps/pg/instances/x", `{}`).Code).To(Equal(http.StatusNotFound))
		cell.UpdateLRPReturns(fmt.Errorf("%w: routes: a port's protocol cannot change", api.ErrInvalidUpdate))
		rec = do("PUT", "/v2/lrps/pg/instances/ig", `{}`)
		Expect(rec.Code).To(Equal(http.StatusBadRequest))
		Expect(rec.Body.String()).To(ContainSubstring("protocol cannot change"))
		cell.UpdateLRPReturns(fmt.Errorf("%w: container ig is completed", api.ErrNotRunning))
		Expect(do("PUT", "/v2/lrps/pg/instances/ig", `{}`).Code).To(Equal(http.StatusConflict))
		Expect(cell.UpdateLRPCallCount()).To(Equal(5))
	})

	It("accepts a task cancel with 202 and answers 404 for an unknown task", func() {
		Expect(do("POST", "/v1/tasks/t-1/cancel", "").Code).To(Equal(http.StatusAccepted))
		_, guid := cell.CancelTaskArgsForCall(0)
		Expect(guid).To(Equal("t-1"))
		cell.CancelTaskReturns(fmt.Errorf("%w: task x", api.ErrNotFound))
		Expect(do("POST", "/v1/tasks/x/cancel", "").Code).To(Equal(http.StatusNotFound))
	})

	It("answers /ping from the cell's health", func() {
		Expect(do("GET", "/ping", "").Code).To(Equal(http.StatusOK))
		cell.PingReturns(errors.New("containerd down"))
		Expect(do("GET", "/ping", "").Code).To(Equal(http.StatusServiceUnavailable))
	})
})
