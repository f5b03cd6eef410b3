package cellinit

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/cellagent/cellagent/internal/atomicfile"
)

// StateFile is the name of the proxy's state file in the state directory.
const StateFile = "proxy-state.json"

// Phase is what the init last saw of the proxy.
type Phase string

const (
	// PhaseRunning: the proxy was started (PID) and has not exited since.
	PhaseRunning Phase = "running"
	// PhaseExited: the proxy exited (Status); a restart is due.
	PhaseExited Phase = "exited"
	// PhaseFailed: the proxy exited more than MaxRestarts times in a row
	// (or could not be started): no more restarts, the instance fails.
	PhaseFailed Phase = "failed"
)

// ProxyState is the content of the state file. Seq grows with every
// change, so a reader tells a new exit from one it has seen.
type ProxyState struct {
	Seq   uint64 `json:"seq"`
	Phase Phase  `json:"phase"`
	// PID is the proxy's pid in the container's pid namespace.
	PID int `json:"pid,omitempty"`
	// Status is the last exit status (128+N for signal N).
	Status int `json:"status"`
	// Failures counts quick exits in a row (see restartPolicy).
	Failures int `json:"failures"`
	// RestartInMS is the delay before the next start (PhaseExited).
	RestartInMS int64 `json:"restart_in_ms,omitempty"`
	// Error says why a start failed, if one did.
	Error string `json:"error,omitempty"`
	// AppError says why the app could not be started (its helper found no
	// executable, could not change to its user, ...). The init then exits
	// with AppStartFailed: this tells that exit from an app that ran and
	// exited 127 itself.
	AppError string `json:"app_error,omitempty"`
	// HealthChecks says the init runs the instance's liveness checks
	// (Config.HealthInterval): the agent then takes Unhealthy for their
	// answer instead of probing the instance itself.
	HealthChecks bool `json:"health_checks,omitempty"`
	// Unhealthy is why the last round of checks failed; empty when it
	// passed or none ran yet. The file is written when it changes.
	Unhealthy string `json:"unhealthy,omitempty"`
}

// AppStartFailed is the init's exit status when the app could not be
// started (a shell's "command not found"); the state file's AppError says
// why.
const AppStartFailed = 127

// WriteState replaces the state file in dir. The file outlives only the
// container (NoSync): a machine crash ends both.
func WriteState(dir string, st ProxyState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(dir+"/"+StateFile, append(b, '\n'), 0o640, atomicfile.NoSync)
}

// ReadState reads the state file in dir.
func ReadState(dir string) (ProxyState, error) {
	var st ProxyState
	b, err := os.ReadFile(dir + "/" + StateFile)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("proxy state %s: %w", dir, err)
	}
	return st, nil
}
