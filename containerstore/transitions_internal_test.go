package containerstore

import (
	"errors"
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("transitions", func() {
	allowedPairs := map[[2]executor.State]bool{
		{executor.StateReserved, executor.StateInitializing}:  true,
		{executor.StateReserved, executor.StateCompleted}:     true,
		{executor.StateInitializing, executor.StateCreated}:   true,
		{executor.StateInitializing, executor.StateCompleted}: true,
		{executor.StateCreated, executor.StateRunning}:        true,
		{executor.StateCreated, executor.StateCompleted}:      true,
		{executor.StateRunning, executor.StateCompleted}:      true,
	}

	// Every pair of states, the invalid zero state included.
	var entries []TableEntry
	all := append([]executor.State{executor.StateInvalid}, executor.States...)
	for _, from := range all {
		for _, to := range all {
			entries = append(entries, Entry(fmt.Sprintf("%s -> %s", from, to), from, to, allowedPairs[[2]executor.State{from, to}]))
		}
	}

	DescribeTable("only the pairs in the diagram pass",
		func(from, to executor.State, ok bool) {
			Expect(CanTransition(from, to)).To(Equal(ok))
			err := checkTransition(from, to)
			if ok {
				Expect(err).NotTo(HaveOccurred())
				return
			}
			Expect(err).To(HaveOccurred())
			Expect(errors.Is(err, executor.ErrInvalidTransition)).To(BeTrue())
			Expect(err.Error()).To(HaveSuffix(fmt.Sprintf(": %s->%s", from, to)))
			Expect(executor.ErrorFor(fmt.Errorf("container g1: %w", err)).Status).To(Equal(409))
		},
		entries,
	)

	It("lets every state reach completed except completed itself", func() {
		for _, s := range executor.States {
			Expect(CanTransition(s, executor.StateCompleted)).To(Equal(s != executor.StateCompleted), s.String())
		}
	})
})
