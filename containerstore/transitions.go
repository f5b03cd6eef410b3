package containerstore

import (
	"fmt"

	"github.com/cellagent/cellagent/executor"
)

// allowed is the one table of state transitions.
var allowed = map[executor.State][]executor.State{
	executor.StateReserved:     {executor.StateInitializing, executor.StateCompleted},
	executor.StateInitializing: {executor.StateCreated, executor.StateCompleted},
	executor.StateCreated:      {executor.StateRunning, executor.StateCompleted},
	executor.StateRunning:      {executor.StateCompleted},
	executor.StateCompleted:    {},
}

// CanTransition reports whether from -> to is in the table.
func CanTransition(from, to executor.State) bool {
	for _, s := range allowed[from] {
		if s == to {
			return true
		}
	}
	return false
}

func checkTransition(from, to executor.State) error {
	if !CanTransition(from, to) {
		return fmt.Errorf("%w: %s->%s", executor.ErrInvalidTransition, from, to)
	}
	return nil
}
