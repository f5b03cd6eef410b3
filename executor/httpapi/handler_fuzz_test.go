package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/executor/httpapi"
	"github.com/cellagent/cellagent/fakes"
)

// fuzzGUID is the documented guid grammar: the fake client must never see
// a guid outside it.
var fuzzGUID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

// fuzzStatuses are the statuses the API documents.
var fuzzStatuses = map[int]bool{200: true, 201: true, 202: true, 204: true,
	400: true, 403: true, 404: true, 405: true, 409: true, 413: true, 415: true, 503: true}

// fuzzClientErrors are what a store may answer; fail picks one (0: none).
var fuzzClientErrors = []error{
	executor.ErrContainerNotFound, executor.ErrContainerExists, executor.ErrInvalidTransition,
	executor.ErrInsufficientResources, executor.ErrEvacuating, executor.ErrUnavailable, executor.ErrInvalidRequest,
}

type fuzzEvacuator struct{ err error }

func (e fuzzEvacuator) Evacuate() error { return e.err }

// FuzzHandler sends arbitrary requests, parsed the way net/http's server
// parses them, through the API handler over a fake client that answers
// with success or (fail != 0) one of the store's errors.
func FuzzHandler(f *testing.F) {
	const run = `{"image":"preloaded:busybox","process":{"path":"/bin/sh"},"ports":[8080]}`
	const put = `{"image":"preloaded:busybox","process":{"path":"/bin/sh"},"resources":{"memory_mb":128},"ports":[8080]}`
	f.Add("PUT", "/v1/containers/g1", []byte(put), uint8(0))
	f.Add("POST", "/v1/containers/g1/run", []byte(run), uint8(2))
	f.Add("POST", "/v1/allocations", []byte(`{"allocations":[{"guid":"g1","resources":{"memory_mb":64}}]}`), uint8(0))
	f.Add("GET", "/v1/events?since=3", []byte(nil), uint8(0))
	f.Add("GET", "/v1/containers/g1/logs?follow=true", []byte(nil), uint8(1))
	f.Add("DELETE", "/v1/containers/..%2Fetc", []byte(nil), uint8(0))

	f.Fuzz(func(t *testing.T, method, target string, body []byte, fail uint8) {
		raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: cell\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", method, target, len(body))
		req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(strings.NewReader(raw), bytes.NewReader(body))))
		if err != nil {
			return // net/http's server answers 400 itself; the handler never sees it
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req = req.WithContext(ctx)

		var clientErr error
		if fail != 0 {
			clientErr = fmt.Errorf("store: %w", fuzzClientErrors[int(fail-1)%len(fuzzClientErrors)])
		}
		client := newFuzzClient(clientErr)
		h := httpapi.New(lager.NewLogger("fuzz"), httpapi.Config{Client: client, Evacuator: fuzzEvacuator{clientErr}})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)

		if !fuzzStatuses[w.Code] {
			t.Fatalf("%s %s: status %d outside the API's statuses; body %q", method, target, w.Code, w.Body.String())
		}
		// An error with a body carries the API's error; only net/http's
		// own answers (400 to a "*" target) have none.
		if w.Code >= 400 && (w.Body.Len() > 0 || w.Header().Get("Content-Type") != "") {
			checkErrorBody(t, w)
		}
		for name, calls := range client.Invocations() {
			for _, args := range calls {
				if len(args) < 2 {
					continue
				}
				if guid, ok := args[1].(string); ok && !fuzzGUID.MatchString(guid) {
					t.Fatalf("%s %s: client.%s called with invalid guid %q", method, target, name, guid)
				}
			}
		}
	})
}

func newFuzzClient(err error) *fakes.FakeClient {
	c := &fakes.FakeClient{}
	c.PingReturns(err)
	c.StateReturns(executor.CellState{CellID: "cell"}, err)
	c.AllocateReturns(nil, err)
	c.RunReturns(err)
	c.AllocateAndRunReturns(executor.Container{GUID: "g1"}, err)
	c.ListReturns(nil, err)
	c.GetReturns(executor.Container{GUID: "g1"}, err)
	c.StopReturns(err)
	c.DeleteReturns(err)
	c.EventsStub = func(context.Context, uint64) (<-chan executor.Event, error) {
		if err != nil {
			return nil, err
		}
		ch := make(chan executor.Event, 1)
		ch <- executor.Event{Seq: 1, Type: executor.EventContainerState, GUID: "g1"}
		close(ch)
		return ch, nil
	}
	c.LogsStub = func(context.Context, string, executor.LogOptions) (io.ReadCloser, error) {
		if err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("line 1\n")), nil
	}
	return c
}

// checkErrorBody requires the API's error shape, {"error":{"code","message"}},
// with the code's own status.
func checkErrorBody(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("status %d with Content-Type %q, want application/json; body %q", w.Code, ct, w.Body.String())
	}
	var body struct {
		Error *struct {
			Code    *string `json:"code"`
			Message *string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Error == nil || body.Error.Code == nil || body.Error.Message == nil {
		t.Fatalf("status %d: body %q is not {\"error\":{\"code\",\"message\"}} (%v)", w.Code, w.Body.String(), err)
	}
	want := executor.ErrorFromCode(*body.Error.Code, "", 0).(*executor.Error)
	if want.Status != w.Code {
		t.Fatalf("status %d with code %q, whose status is %d", w.Code, *body.Error.Code, want.Status)
	}
}
