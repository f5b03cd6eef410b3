package executor_test

import (
	"errors"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("ValidateGUID", func() {
	DescribeTable("accepts guids that are safe as a directory name",
		func(guid string) {
			Expect(executor.ValidateGUID(guid)).To(Succeed())
		},
		Entry("letters and digits", "abc123"),
		Entry("a uuid", "6f1c0a5e-1b9d-4b8e-9d1e-2f3a4b5c6d7e"),
		Entry("underscores and dashes after the first character", "a_b-c"),
		Entry("a single character", "a"),
		Entry("128 characters", strings.Repeat("a", 128)),
	)

	DescribeTable("rejects everything else as InvalidRequest",
		func(guid string) {
			err := executor.ValidateGUID(guid)
			Expect(err).To(HaveOccurred())
			Expect(errors.Is(err, executor.ErrInvalidRequest)).To(BeTrue())
			Expect(err.Error()).To(ContainSubstring("invalid guid"))
		},
		Entry("empty", ""),
		Entry("a parent directory", "../etc"),
		Entry("dot dot", ".."),
		Entry("a slash", "a/b"),
		Entry("a leading dash (looks like a flag)", "-x"),
		Entry("a leading underscore", "_x"),
		Entry("129 characters", strings.Repeat("a", 129)),
		Entry("unicode letters", "contäiner"),
		Entry("a space", "a b"),
		Entry("a newline at the end", "abc\n"),
		Entry("a NUL byte", "a\x00b"),
		Entry("a percent-encoded slash", "..%2Fetc"),
	)
})

var _ = Describe("RunRequest.Validate", func() {
	valid := func() executor.RunRequest {
		return executor.RunRequest{
			Resources: &executor.Resources{MemoryMB: 128, DiskMB: 256, MaxPids: 64},
			Image:     "preloaded:busybox",
			Process:   executor.Process{Path: "/app/server"},
			Ports:     []uint16{8080, 9090},
			Routes:    []executor.Route{{Hostnames: []string{"app.example.com"}, Port: 8080}},
			Check:     &executor.Check{HTTP: &executor.HTTPCheck{Port: 8080, Path: "/"}},
			Tags:      map[string]string{"app": "a1"},
			CPUWeight: 100, StartTimeout: executor.Duration(time.Minute), StopGrace: executor.Duration(10 * time.Second),
		}
	}

	It("accepts a complete request, with and without required resources", func() {
		r := valid()
		Expect(r.Validate(true)).To(Succeed())
		Expect(r.Validate(false)).To(Succeed())
	})

	It("accepts a request without resources when they are not required", func() {
		r := valid()
		r.Resources = nil
		Expect(r.Validate(false)).To(Succeed())
	})

	It("accepts the boundary values", func() {
		r := valid()
		r.CPUWeight = 10000
		r.StartTimeout = executor.Duration(24 * time.Hour)
		r.StopGrace = executor.Duration(time.Hour)
		r.Resources.DiskMB, r.Resources.MaxPids = 0, 0
		r.Ports = make([]uint16, 16)
		for i := range r.Ports {
			r.Ports[i] = uint16(8080 + i)
		}
		r.Process.Env = make([]string, 1024)
		r.Tags = map[string]string{strings.Repeat("k", 128): "v"}
		Expect(r.Validate(true)).To(Succeed())
	})

	DescribeTable("rejects each broken rule as InvalidRequest",
		func(requireResources bool, mutate func(*executor.RunRequest), message string) {
			r := valid()
			mutate(&r)
			err := r.Validate(requireResources)
			Expect(err).To(HaveOccurred())
			Expect(errors.Is(err, executor.ErrInvalidRequest)).To(BeTrue(), "error %q is not InvalidRequest", err)
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("resources missing when required", true, func(r *executor.RunRequest) { r.Resources = nil }, "resources are required"),
		Entry("zero memory", true, func(r *executor.RunRequest) { r.Resources.MemoryMB = 0 }, "memory_mb must be positive, got 0"),
		Entry("negative memory", false, func(r *executor.RunRequest) { r.Resources.MemoryMB = -1 }, "memory_mb must be positive"),
		Entry("negative disk", true, func(r *executor.RunRequest) { r.Resources.DiskMB = -1 }, "disk_mb must not be negative"),
		Entry("negative max_pids", true, func(r *executor.RunRequest) { r.Resources.MaxPids = -1 }, "max_pids must not be negative"),
		Entry("no image", true, func(r *executor.RunRequest) { r.Image = "" }, "image is required"),
		Entry("no process path", true, func(r *executor.RunRequest) { r.Process.Path = "" }, "process.path is required"),
		Entry("negative index", true, func(r *executor.RunRequest) { r.Index = -1 }, "index must not be negative"),
		Entry("negative cpu weight", true, func(r *executor.RunRequest) { r.CPUWeight = -1 }, "cpu_weight must be within 0-10000, got -1"),
		Entry("cpu weight above 10000", true, func(r *executor.RunRequest) { r.CPUWeight = 10001 }, "cpu_weight must be within 0-10000, got 10001"),
		Entry("negative start timeout", true, func(r *executor.RunRequest) { r.StartTimeout = -1 }, "must not be negative"),
		Entry("negative stop grace", true, func(r *executor.RunRequest) { r.StopGrace = -1 }, "must not be negative"),
		Entry("start timeout over 24h", true, func(r *executor.RunRequest) {
			r.StartTimeout = executor.Duration(24*time.Hour + time.Nanosecond)
		}, "start_timeout must be at most 24h"),
		Entry("stop grace over 1h", true, func(r *executor.RunRequest) {
			r.StopGrace = executor.Duration(time.Hour + time.Nanosecond)
		}, "stop_grace at most 1h"),
		Entry("port 0", true, func(r *executor.RunRequest) { r.Ports = []uint16{0}; r.Check = nil; r.Routes = nil }, "port 0 is not a valid container port"),
		Entry("a duplicate port", true, func(r *executor.RunRequest) { r.Ports = []uint16{8080, 9090, 8080} }, "port 8080 listed twice"),
		Entry("17 ports", true, func(r *executor.RunRequest) {
			r.Ports = make([]uint16, 17)
			for i := range r.Ports {
				r.Ports[i] = uint16(8080 + i)
			}
		}, "at most 16 ports, got 17"),
		Entry("a check with neither tcp nor http", true, func(r *executor.RunRequest) { r.Check = &executor.Check{} }, "exactly one of tcp or http"),
		Entry("a check with both tcp and http", true, func(r *executor.RunRequest) {
			r.Check = &executor.Check{TCP: &executor.TCPCheck{Port: 8080}, HTTP: &executor.HTTPCheck{Port: 8080}}
		}, "exactly one of tcp or http"),
		Entry("a tcp check on an unlisted port", true, func(r *executor.RunRequest) {
			r.Check = &executor.Check{TCP: &executor.TCPCheck{Port: 7000}}
		}, "check port 7000 is not in ports"),
		Entry("an http check on an unlisted port", true, func(r *executor.RunRequest) {
			r.Check = &executor.Check{HTTP: &executor.HTTPCheck{Port: 7001}}
		}, "check port 7001 is not in ports"),
		Entry("an http check path naming another host (issue 13 item 11)", true, func(r *executor.RunRequest) {
			r.Check = &executor.Check{HTTP: &executor.HTTPCheck{Port: 8080, Path: "@127.0.0.1:1800/v1/state"}}
		}, "must start with a single /"),
		Entry("an http check path that is a network-path reference", true, func(r *executor.RunRequest) {
			r.Check = &executor.Check{HTTP: &executor.HTTPCheck{Port: 8080, Path: "//169.254.169.254/latest"}}
		}, "must start with a single /"),
		Entry("an http check path with a newline", true, func(r *executor.RunRequest) {
			r.Check = &executor.Check{HTTP: &executor.HTTPCheck{Port: 8080, Path: "/a\nHost: x"}}
		}, "is not a URL path"),
		Entry("a route on an unlisted port", true, func(r *executor.RunRequest) {
			r.Routes = append(r.Routes, executor.Route{Hostnames: []string{"b.example.com"}, Port: 7002})
		}, "route port 7002 is not in ports"),
		Entry("an empty tag key", true, func(r *executor.RunRequest) { r.Tags[""] = "v" }, "tag keys must be 1-128 bytes"),
		Entry("a 129-byte tag key", true, func(r *executor.RunRequest) { r.Tags[strings.Repeat("k", 129)] = "v" }, "tag keys must be 1-128 bytes"),
		Entry("1025 environment variables", true, func(r *executor.RunRequest) { r.Process.Env = make([]string, 1025) }, "at most 1024 environment variables"),
	)
})

var _ = Describe("RunRequest.Validate of downloads", func() {
	It("names a refused download URL without its query or user info", func() {
		for _, d := range []executor.DownloadAction{
			{From: "ftp://user:PASSWORD@blob.example/droplet?signature=SECRET", To: "/app"},
			{From: "https://blob.example/droplet?signature=SECRET", To: "/app", Artifact: strings.Repeat("a", 1<<20)},
		} {
			r := executor.RunRequest{Image: "preloaded:busybox", Process: executor.Process{Path: "/app/server"},
				Setup: &executor.SetupAction{Download: &d}}
			err := r.Validate(false)
			Expect(err).To(MatchError(executor.ErrInvalidRequest))
			Expect(err.Error()).To(ContainSubstring("blob.example/droplet"))
			Expect(err.Error()).NotTo(Or(ContainSubstring("SECRET"), ContainSubstring("PASSWORD")))
		}
	})
})
