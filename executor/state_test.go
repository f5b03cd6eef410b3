package executor_test

import (
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("State", func() {
	DescribeTable("reads and writes its name in JSON",
		func(s executor.State, name string) {
			Expect(s.String()).To(Equal(name))
			b, err := json.Marshal(s)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(b)).To(Equal(`"` + name + `"`))
			var back executor.State
			Expect(json.Unmarshal(b, &back)).To(Succeed())
			Expect(back).To(Equal(s))
			parsed, err := executor.ParseState(name)
			Expect(err).NotTo(HaveOccurred())
			Expect(parsed).To(Equal(s))
		},
		Entry(nil, executor.StateReserved, "reserved"),
		Entry(nil, executor.StateInitializing, "initializing"),
		Entry(nil, executor.StateCreated, "created"),
		Entry(nil, executor.StateRunning, "running"),
		Entry(nil, executor.StateCompleted, "completed"),
	)

	It("lists the valid states in lifecycle order", func() {
		Expect(executor.States).To(Equal([]executor.State{executor.StateReserved, executor.StateInitializing,
			executor.StateCreated, executor.StateRunning, executor.StateCompleted}))
	})

	It("names a state out of range by number", func() {
		Expect(executor.State(42).String()).To(Equal("state(42)"))
	})

	DescribeTable("refuses what is not a valid state",
		func(in string) {
			var s executor.State
			Expect(json.Unmarshal([]byte(in), &s)).NotTo(Succeed())
		},
		Entry("invalid is not a state one can send", `"invalid"`),
		Entry("unknown name", `"paused"`),
		Entry("wrong case", `"Running"`),
		Entry("a number", `4`),
	)

	It("round-trips a whole container through JSON", func() {
		status := 3
		c := executor.Container{
			GUID: "g1", State: executor.StateCompleted, Tags: map[string]string{"app": "a1"},
			Resources: executor.Resources{MemoryMB: 128, DiskMB: 256}, MemoryLimitBytes: 160 << 20,
			Ports:     []executor.PortMapping{{ContainerPort: 8080, HostPort: 40001, ContainerTLSProxyPort: 61001, HostTLSProxyPort: 40002}},
			RunResult: executor.RunResult{Failed: true, FailureReason: "app exited with status 3", ExitStatus: &status},
			CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		}
		b, err := json.Marshal(c)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(b)).To(ContainSubstring(`"state":"completed"`))
		var back executor.Container
		Expect(json.Unmarshal(b, &back)).To(Succeed())
		Expect(back).To(Equal(c))
	})

	It("reads durations as Go duration strings", func() {
		var r executor.RunRequest
		Expect(json.Unmarshal([]byte(`{"start_timeout":"90s","stop_grace":"1m30s"}`), &r)).To(Succeed())
		Expect(time.Duration(r.StartTimeout)).To(Equal(90 * time.Second))
		Expect(time.Duration(r.StopGrace)).To(Equal(90 * time.Second))
		b, err := json.Marshal(r)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(b)).To(ContainSubstring(`"start_timeout":"1m30s"`))
		Expect(json.Unmarshal([]byte(`{"start_timeout":"soon"}`), &r)).NotTo(Succeed())
	})
})
