package containerstore

import (
	"context"
	"os"

	"github.com/cellagent/cellagent/executor"
)

// FileReader is a ContainerRuntime that can read a file from a
// container's root filesystem (the runtime adapter); the store checks the
// path and the container first.
type FileReader interface {
	ReadFile(ctx context.Context, guid, path string, limit int64) ([]byte, error)
}

// ReadFile answers at most limit bytes of the regular file at p in a
// created, running or completed container's root filesystem (a task's
// result file); a larger file is an error.
func (s *Store) ReadFile(ctx context.Context, guid, p string, limit int64) ([]byte, error) {
	if err := executor.ValidateFilePath(p); err != nil {
		return nil, err
	}
	c, err := s.lookup(guid)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	state := c.info.State
	s.mu.Unlock()
	if state != executor.StateCreated && state != executor.StateRunning && state != executor.StateCompleted {
		return nil, executor.NewError(executor.ErrInvalidTransition, "container %s is %s: it has no files to read yet", guid, state)
	}
	fr, ok := s.deps.Runtime.(FileReader)
	if !ok {
		return nil, executor.NewError(executor.ErrUnavailable, "reading container files is not available on this agent")
	}
	return fr.ReadFile(ctx, guid, p, limit)
}

// RootfsWriter is a ContainerRuntime that can open a prepared container's
// writable root filesystem on the host before its task starts (the setup
// downloads are extracted there, into the container's own writable layer).
// fn gets the filesystem as an os.Root and a look-up of its users; the
// filesystem is unmounted when fn returns.
type RootfsWriter interface {
	WriteRootfs(ctx context.Context, guid string, fn func(root *os.Root, users UserLookup) error) error
}

// RootfsUser is a user of a container's root filesystem.
type RootfsUser struct {
	User
	// Home is the user's home directory in /etc/passwd; "" for a numeric
	// uid that is not listed.
	Home string
}

// UserLookup resolves a user name or numeric uid in a root filesystem.
type UserLookup func(name string) (RootfsUser, error)
