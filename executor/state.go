package executor

import (
	"encoding/json"
	"fmt"
)

// State is where a container is in its lifecycle.
type State uint8

const (
	StateInvalid State = iota
	// StateReserved: capacity is held; nothing exists in containerd yet.
	StateReserved
	// StateInitializing: network, credentials, proxy files and the containerd
	// container are being made.
	StateInitializing
	// StateCreated: the containerd container exists; its task is starting.
	StateCreated
	// StateRunning: the task runs and its readiness check passed.
	StateRunning
	// StateCompleted: the container stopped, failed or never started; see RunResult.
	StateCompleted
)

var stateNames = [...]string{"invalid", "reserved", "initializing", "created", "running", "completed"}

// States lists the valid states in lifecycle order.
var States = []State{StateReserved, StateInitializing, StateCreated, StateRunning, StateCompleted}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ParseState is the inverse of String.
func ParseState(name string) (State, error) {
	for i, n := range stateNames {
		if n == name && i != 0 {
			return State(i), nil
		}
	}
	return StateInvalid, fmt.Errorf("unknown state %q", name)
}

func (s State) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

func (s *State) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return err
	}
	st, err := ParseState(name)
	if err != nil {
		return err
	}
	*s = st
	return nil
}
