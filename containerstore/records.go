package containerstore

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/atomicfile"
)

// record is what the store keeps on disk of each container, enough to
// adopt it after an agent restart.
type record struct {
	Container executor.Container  `json:"container"`
	Request   executor.RunRequest `json:"request"`
	User      User                `json:"user"`
	NetNSPath string              `json:"netns_path,omitempty"`
	Overhead  int                 `json:"memory_overhead_mb"`
}

func (s *Store) recordPath(guid string) string {
	return filepath.Join(s.cfg.DataDir, "containers", guid+".json")
}

// writeRecord stores r atomically. SyncFile: adoption after an agent
// crash needs only atomicity (the page cache outlives the agent), but a
// record must never be read back empty after a machine crash, or recovery
// would drop it and with it a completed container's result and
// reservation; an older version is fine (recovery reconciles it with
// containerd). The directory is not synced: one fsync per transition is
// enough cost on the start path (~0.2 ms measured, under persistMu).
func (s *Store) writeRecord(r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(s.recordPath(r.Container.GUID), b, 0o600, atomicfile.SyncFile); err != nil {
		return fmt.Errorf("write record %s: %w", r.Container.GUID, err)
	}
	return nil
}

func (s *Store) removeRecord(guid string) error {
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	err := os.Remove(s.recordPath(guid))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

// readRecords loads every record; unreadable ones are returned by name so
// recovery can remove them.
func (s *Store) readRecords() (map[string]record, []string, error) {
	dir := filepath.Join(s.cfg.DataDir, "containers")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]record{}
	var bad []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") {
			// A write a crash cut short (".tmp": an agent before
			// atomicfile).
			if atomicfile.IsTemp(name) || strings.HasSuffix(name, ".tmp") {
				bad = append(bad, name)
			}
			continue
		}
		guid := strings.TrimSuffix(name, ".json")
		b, err := os.ReadFile(filepath.Join(dir, name))
		var r record
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil || executor.ValidateGUID(guid) != nil || r.Container.GUID != guid {
			bad = append(bad, name)
			continue
		}
		out[guid] = r
	}
	return out, bad, nil
}
