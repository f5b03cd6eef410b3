package executor

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

var guidPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

// ValidateGUID accepts only guids that are safe as a directory name.
func ValidateGUID(guid string) error {
	if !guidPattern.MatchString(guid) {
		return NewError(ErrInvalidRequest, "invalid guid %q: must match [A-Za-z0-9][A-Za-z0-9_-]{0,127}", guid)
	}
	return nil
}

// ValidateResources checks what an allocation asks for.
func ValidateResources(r Resources) error {
	switch {
	case r.MemoryMB <= 0:
		return NewError(ErrInvalidRequest, "resources.memory_mb must be positive, got %d", r.MemoryMB)
	case r.DiskMB < 0:
		return NewError(ErrInvalidRequest, "resources.disk_mb must not be negative, got %d", r.DiskMB)
	case r.MaxPids < 0:
		return NewError(ErrInvalidRequest, "resources.max_pids must not be negative, got %d", r.MaxPids)
	}
	return nil
}

// Validate checks a run request on its own. Checks that need the cell
// (image exists, capacity, reserved proxy ports) happen in the store.
// requireResources is true for PUT (allocate and run).
func (r *RunRequest) Validate(requireResources bool) error {
	if requireResources {
		if r.Resources == nil {
			return NewError(ErrInvalidRequest, "resources are required")
		}
	}
	if r.Resources != nil {
		if err := ValidateResources(*r.Resources); err != nil {
			return err
		}
	}
	if r.Image == "" {
		return NewError(ErrInvalidRequest, "image is required")
	}
	if r.Process.Path == "" {
		return NewError(ErrInvalidRequest, "process.path is required")
	}
	if r.Index < 0 {
		return NewError(ErrInvalidRequest, "index must not be negative")
	}
	if r.CPUWeight < 0 || r.CPUWeight > 10000 {
		return NewError(ErrInvalidRequest, "cpu_weight must be within 0-10000, got %d", r.CPUWeight)
	}
	if r.StartTimeout < 0 || r.StopGrace < 0 {
		return NewError(ErrInvalidRequest, "start_timeout and stop_grace must not be negative")
	}
	if time.Duration(r.StartTimeout) > 24*time.Hour || time.Duration(r.StopGrace) > time.Hour {
		return NewError(ErrInvalidRequest, "start_timeout must be at most 24h and stop_grace at most 1h")
	}
	seen := map[uint16]bool{}
	for _, p := range r.Ports {
		if p == 0 {
			return NewError(ErrInvalidRequest, "port 0 is not a valid container port")
		}
		if seen[p] {
			return NewError(ErrInvalidRequest, "port %d listed twice", p)
		}
		seen[p] = true
	}
	if len(r.Ports) > 16 {
		return NewError(ErrInvalidRequest, "at most 16 ports, got %d", len(r.Ports))
	}
	if c := r.Check; c != nil {
		if (c.TCP == nil) == (c.HTTP == nil) {
			return NewError(ErrInvalidRequest, "check must have exactly one of tcp or http")
		}
		port := uint16(0)
		if c.TCP != nil {
			port = c.TCP.Port
		} else {
			port = c.HTTP.Port
			if _, err := ParseCheckPath(c.HTTP.Path); err != nil {
				return err
			}
		}
		if !seen[port] {
			return NewError(ErrInvalidRequest, "check port %d is not in ports", port)
		}
	}
	for _, rt := range r.Routes {
		if !seen[rt.Port] {
			return NewError(ErrInvalidRequest, "route port %d is not in ports", rt.Port)
		}
	}
	for k := range r.Tags {
		if len(k) == 0 || len(k) > 128 {
			return NewError(ErrInvalidRequest, "tag keys must be 1-128 bytes")
		}
	}
	if len(r.Process.Env) > 1024 {
		return NewError(ErrInvalidRequest, "at most 1024 environment variables")
	}
	return r.validateSetup()
}

// String makes a short description of a duration field for messages.
func (d Duration) String() string { return fmt.Sprint(time.Duration(d)) }

// imageNamePattern is a container image reference as containerd names
// images: registry/path:tag (the characters of the distribution grammar,
// without a digest).
var imageNamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$`)

// ValidateImageName checks the name given to an imported image (empty: the
// archive's own names are used).
func ValidateImageName(name string) error {
	switch {
	case name == "":
		return nil
	case len(name) > 255 || !imageNamePattern.MatchString(name):
		return NewError(ErrInvalidRequest, "image name %q: want a reference like registry.example.com/app:1.0", name)
	case strings.Contains(name, ".."):
		return NewError(ErrInvalidRequest, "image name %q: '..' is not allowed", name)
	}
	return nil
}
