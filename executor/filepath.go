package executor

import (
	"path"
	"strings"
)

// maxFilePath bounds a path given to ReadFile.
const maxFilePath = 1024

// ValidateFilePath checks a path inside a container: absolute, in clean
// form (no "..", "." or doubled slashes), no NUL, not the root itself.
func ValidateFilePath(p string) error {
	switch {
	case p == "" || !strings.HasPrefix(p, "/") || p == "/":
		return NewError(ErrInvalidRequest, "file path %q must be an absolute path to a file", p)
	case len(p) > maxFilePath:
		return NewError(ErrInvalidRequest, "file path is longer than %d bytes", maxFilePath)
	case strings.ContainsRune(p, 0) || path.Clean(p) != p:
		return NewError(ErrInvalidRequest, "file path %q must be clean (no .., ., // or NUL)", p)
	}
	return nil
}

// reservedMounts are container paths the agent mounts itself or the
// kernel owns: no request mounts anything at or under them.
var reservedMounts = []string{"/proc", "/sys", "/dev", "/etc/cf-instance-credentials", "/etc/cf-assets"}

// ReservedMountPath answers the reserved path p is at or under, if any.
func ReservedMountPath(p string) (string, bool) {
	for _, r := range reservedMounts {
		if p == r || strings.HasPrefix(p, r+"/") {
			return r, true
		}
	}
	return "", false
}
