package routeemitter

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cellagent/cellagent/internal/atomicfile"
	"github.com/cellagent/cellagent/routeemitter/routetable"
)

const (
	journalDir     = "routeemitter"
	journalFile    = "routes.json"
	journalVersion = 1
)

// journalState is what the route journal file holds: the registrations
// sent per instance guid, and the unregistrations still being repeated.
type journalState struct {
	Version    int                                     `json:"version"`
	Registered map[string][]routetable.RegistryMessage `json:"registered"`
	Tombstones map[string][]routetable.RegistryMessage `json:"tombstones"`
}

// journal persists journalState atomically (temp file + fsync + rename), so
// that a crash leaves either the old or the new file, never a torn one.
type journal struct {
	path string
}

func newJournal(dataDir string) journal {
	return journal{path: filepath.Join(dataDir, journalDir, journalFile)}
}

// load answers the journaled state; a missing file is an empty state.
func (j journal) load() (journalState, error) {
	st := journalState{Version: journalVersion}
	data, err := os.ReadFile(j.path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read route journal: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return journalState{Version: journalVersion}, fmt.Errorf("decode route journal %s: %w", j.path, err)
	}
	if st.Version != journalVersion {
		return journalState{Version: journalVersion}, fmt.Errorf("route journal %s: unknown version %d", j.path, st.Version)
	}
	return st, nil
}

// quarantine moves an unreadable journal aside so the next save does not
// overwrite what an operator may want to look at.
func (j journal) quarantine() error {
	if err := os.Rename(j.path, j.path+".corrupt"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("move route journal aside: %w", err)
	}
	return nil
}

func (j journal) save(st journalState) (retErr error) {
	st.Version = journalVersion
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode route journal: %w", err)
	}
	dir := filepath.Dir(j.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create route journal dir: %w", err)
	}
	// The journal decides what is unregistered after a restart: it must
	// survive a machine crash once save returns.
	if err := atomicfile.WriteFile(j.path, data, 0o600, atomicfile.SyncFileAndDir); err != nil {
		return fmt.Errorf("route journal: %w", err)
	}
	return nil
}
