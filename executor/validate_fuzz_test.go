package executor_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/cellagent/cellagent/executor"
)

// guidSpec is the documented guid grammar, written out again so the fuzzer
// compares ValidateGUID with the contract rather than with itself.
var guidSpec = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

// FuzzRunRequest feeds what PUT /v1/containers/{guid} receives, a path guid
// and a body, through the same strict decoding, Validate(true) and
// ValidateGUID. Nothing may panic, and whatever Validate accepts must be
// safe for the store to use without checking again.
func FuzzRunRequest(f *testing.F) {
	f.Add("6f1c0a5e-1b9d-4b8e-9d1e-2f3a4b5c6d7e", []byte(`{"image":"preloaded:busybox","process":{"path":"/bin/sh"},"resources":{"memory_mb":128,"disk_mb":256},"ports":[8080]}`))
	f.Add("app_1", []byte(`{"image":"preloaded:busybox","process":{"path":"/app/server","args":["-p","8080"]},"resources":{"memory_mb":64,"disk_mb":0,"max_pids":32},"ports":[8080,9090],"routes":[{"hostnames":["a.example.com"],"port":8080}],"check":{"http":{"port":9090,"path":"/health"}},"start_timeout":"1m","stop_grace":"10s","cpu_weight":100,"tags":{"app":"a1"}}`))
	f.Add("../etc", []byte(`{"image":"x","process":{"path":"/p"},"resources":{"memory_mb":1},"ports":[8080,8080]}`))
	f.Add("a\x00b", []byte(`{"image":"x","process":{"path":"/p"},"resources":{"memory_mb":1},"ports":[1],"check":{"tcp":{"port":2}}}`))
	f.Add("abc\n", []byte(`{"image":"x","process":{"path":"/p"},"resources":{"memory_mb":1},"ports":[1],"routes":[{"hostnames":["h"],"port":0}]}`))

	f.Fuzz(func(t *testing.T, guid string, body []byte) {
		checkGUID(t, guid)

		var req executor.RunRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return
		}
		if err := req.Validate(true); err != nil {
			var apiErr *executor.Error
			if !errors.As(err, &apiErr) || apiErr.Code != executor.CodeInvalidRequest {
				t.Fatalf("Validate error %v is not an InvalidRequest API error", err)
			}
			return
		}
		checkValidRequest(t, &req)
	})
}

func checkGUID(t *testing.T, guid string) {
	t.Helper()
	err := executor.ValidateGUID(guid)
	want := guidSpec.MatchString(guid)
	if (err == nil) != want {
		t.Fatalf("ValidateGUID(%q) = %v, but the grammar says valid=%v", guid, err, want)
	}
	if err == nil && strings.ContainsAny(guid, "/.\x00") {
		t.Fatalf("ValidateGUID accepted %q, which contains '/', '.' or NUL", guid)
	}
}

func checkValidRequest(t *testing.T, req *executor.RunRequest) {
	t.Helper()
	if req.Resources == nil {
		t.Fatalf("Validate(true) accepted a request without resources")
	}
	if req.Resources.MemoryMB <= 0 || req.Resources.DiskMB < 0 || req.Resources.MaxPids < 0 {
		t.Fatalf("Validate(true) accepted resources %+v", *req.Resources)
	}
	if req.Image == "" || req.Process.Path == "" {
		t.Fatalf("Validate(true) accepted image %q, process.path %q", req.Image, req.Process.Path)
	}
	ports := map[uint16]bool{}
	for _, p := range req.Ports {
		if p == 0 {
			t.Fatalf("Validate(true) accepted port 0 in %v", req.Ports)
		}
		if ports[p] {
			t.Fatalf("Validate(true) accepted duplicate port %d in %v", p, req.Ports)
		}
		ports[p] = true
	}
	if len(req.Ports) > 16 {
		t.Fatalf("Validate(true) accepted %d ports", len(req.Ports))
	}
	for _, rt := range req.Routes {
		if !ports[rt.Port] {
			t.Fatalf("Validate(true) accepted route port %d, not in ports %v", rt.Port, req.Ports)
		}
	}
	if c := req.Check; c != nil {
		if (c.TCP == nil) == (c.HTTP == nil) {
			t.Fatalf("Validate(true) accepted check %+v: not exactly one of tcp or http", *c)
		}
		port := uint16(0)
		if c.TCP != nil {
			port = c.TCP.Port
		} else {
			port = c.HTTP.Port
		}
		if !ports[port] {
			t.Fatalf("Validate(true) accepted check port %d, not in ports %v", port, req.Ports)
		}
	}
	if req.StartTimeout < 0 || req.StopGrace < 0 || req.CPUWeight < 0 || req.CPUWeight > 10000 || req.Index < 0 {
		t.Fatalf("Validate(true) accepted start_timeout %v, stop_grace %v, cpu_weight %d, index %d",
			req.StartTimeout, req.StopGrace, req.CPUWeight, req.Index)
	}
}
