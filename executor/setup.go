package executor

import (
	"encoding/hex"
	"net/url"
	"path"
	"strings"
	"time"
)

// SetupAction is one node of a run request's setup, which runs before the
// app's process starts (Diego's setup action, and the downloads that come
// before the run action of a task). Exactly one field is set:
//
//   - Download fetches an archive and extracts it into the container;
//   - Serial runs its actions one after the other, stopping at the first
//     failure;
//   - Parallel runs its actions at once and fails if any fails;
//   - Try runs its action and ignores its failure;
//   - Timeout fails its action if it has not finished in time;
//   - EmitProgress writes messages to the instance's log around its action.
type SetupAction struct {
	Download     *DownloadAction     `json:"download,omitempty"`
	Serial       []SetupAction       `json:"serial,omitempty"`
	Parallel     []SetupAction       `json:"parallel,omitempty"`
	Try          *SetupAction        `json:"try,omitempty"`
	Timeout      *TimeoutAction      `json:"timeout,omitempty"`
	EmitProgress *EmitProgressAction `json:"emit_progress,omitempty"`
}

// DownloadAction fetches the archive (tgz, tar or zip) at From over HTTP
// or HTTPS and extracts it at To in the container, owned by User.
type DownloadAction struct {
	// Artifact names the download in the instance's log ("Downloading
	// droplet..."); empty: nothing is logged, as in Diego.
	Artifact string `json:"artifact,omitempty"`
	From     string `json:"from"`
	// To is an absolute path, or one relative to User's home directory
	// ("." is the home itself); it never holds "..".
	To string `json:"to"`
	// CacheKey keeps the archive in the cell's download cache under this
	// key (revalidated with the server each time); empty: not cached.
	CacheKey string `json:"cache_key,omitempty"`
	// User owns what is extracted; empty: the process's user.
	User     string   `json:"user,omitempty"`
	Checksum Checksum `json:"checksum,omitzero"`
}

// Checksum is an artifact's expected digest: Algorithm md5, sha1 or
// sha256 and Value its hex digest. Both empty: not checked.
type Checksum struct {
	Algorithm string `json:"algorithm,omitempty"`
	Value     string `json:"value,omitempty"`
}

// TimeoutAction fails Action when it has not finished within Timeout.
type TimeoutAction struct {
	Action  SetupAction `json:"action"`
	Timeout Duration    `json:"timeout"`
}

// EmitProgressAction writes StartMessage to the instance's log before
// Action, SuccessMessage after it succeeded, and FailureMessagePrefix
// with the failure's message when it failed (each only when set).
type EmitProgressAction struct {
	Action               SetupAction `json:"action"`
	StartMessage         string      `json:"start_message,omitempty"`
	SuccessMessage       string      `json:"success_message,omitempty"`
	FailureMessagePrefix string      `json:"failure_message_prefix,omitempty"`
}

// CachedDependency is an archive kept extracted in the cell's download
// cache and mounted read-only at To (absolute) in every container that
// names it (Diego's cached_dependencies: the app lifecycle).
type CachedDependency struct {
	// Name names the dependency in the instance's log; empty: silent.
	Name     string   `json:"name,omitempty"`
	From     string   `json:"from"`
	To       string   `json:"to"`
	CacheKey string   `json:"cache_key"`
	Checksum Checksum `json:"checksum,omitzero"`
}

// Bounds of a run request's setup.
const (
	maxSetupDepth     = 8
	maxSetupDownloads = 64
	maxSetupString    = 1024
	maxDownloadURL    = 4096
)

// checksumHexLen is the hex length of each accepted algorithm's digest.
var checksumHexLen = map[string]int{"md5": 32, "sha1": 40, "sha256": 64}

// Validate checks an artifact's checksum fields.
func (c Checksum) Validate() error {
	if c.Algorithm == "" && c.Value == "" {
		return nil
	}
	n, ok := checksumHexLen[c.Algorithm]
	if !ok {
		return NewError(ErrInvalidRequest, "checksum algorithm %q: want md5, sha1 or sha256", c.Algorithm)
	}
	if _, err := hex.DecodeString(c.Value); err != nil || len(c.Value) != n {
		return NewError(ErrInvalidRequest, "checksum value %q: want %d hex digits (%s)", c.Value, n, c.Algorithm)
	}
	return nil
}

// validateSetup checks a run request's setup and cached dependencies.
func (r *RunRequest) validateSetup() error {
	if r.Setup != nil {
		downloads := 0
		if err := r.Setup.validate(0, &downloads); err != nil {
			return err
		}
	}
	if len(r.CachedDependencies) > maxSetupDownloads {
		return NewError(ErrInvalidRequest, "at most %d cached_dependencies", maxSetupDownloads)
	}
	seen := map[string]bool{}
	for i, d := range r.CachedDependencies {
		if err := d.validate(); err != nil {
			return NewError(ErrInvalidRequest, "cached_dependencies[%d]: %v", i, err)
		}
		if seen[d.To] {
			return NewError(ErrInvalidRequest, "cached_dependencies[%d]: %s is mounted twice", i, d.To)
		}
		seen[d.To] = true
	}
	return nil
}

func (a *SetupAction) validate(depth int, downloads *int) error {
	if depth >= maxSetupDepth {
		return NewError(ErrInvalidRequest, "setup is nested deeper than %d", maxSetupDepth)
	}
	set := 0
	for _, b := range []bool{a.Download != nil, a.Serial != nil, a.Parallel != nil, a.Try != nil, a.Timeout != nil, a.EmitProgress != nil} {
		if b {
			set++
		}
	}
	if set != 1 {
		return NewError(ErrInvalidRequest, "a setup action must have exactly one of download, serial, parallel, try, timeout, emit_progress")
	}
	switch {
	case a.Download != nil:
		if *downloads++; *downloads > maxSetupDownloads {
			return NewError(ErrInvalidRequest, "setup holds more than %d downloads", maxSetupDownloads)
		}
		return a.Download.validate()
	case a.Serial != nil || a.Parallel != nil:
		list := append(a.Serial, a.Parallel...)
		if len(list) == 0 {
			return NewError(ErrInvalidRequest, "a serial or parallel setup action needs actions")
		}
		for i := range list {
			if err := list[i].validate(depth+1, downloads); err != nil {
				return err
			}
		}
		return nil
	case a.Try != nil:
		return a.Try.validate(depth+1, downloads)
	case a.Timeout != nil:
		t := time.Duration(a.Timeout.Timeout)
		if t <= 0 || t > 24*time.Hour {
			return NewError(ErrInvalidRequest, "setup timeout must be within (0, 24h], got %s", t)
		}
		return a.Timeout.Action.validate(depth+1, downloads)
	}
	e := a.EmitProgress
	for _, m := range []string{e.StartMessage, e.SuccessMessage, e.FailureMessagePrefix} {
		if len(m) > maxSetupString {
			return NewError(ErrInvalidRequest, "emit_progress messages are at most %d bytes", maxSetupString)
		}
	}
	return e.Action.validate(depth+1, downloads)
}

func (d *DownloadAction) validate() error {
	if err := validateFrom(d.From); err != nil {
		return err
	}
	if _, err := DownloadTarget(d.To, "/home/user"); err != nil {
		return err
	}
	if err := d.Checksum.Validate(); err != nil {
		return err
	}
	if len(d.Artifact) > maxSetupString || len(d.CacheKey) > maxSetupString || len(d.User) > 256 {
		return NewError(ErrInvalidRequest, "download %q: artifact and cache_key are at most %d bytes, user 256", RedactURL(d.From), maxSetupString)
	}
	return nil
}

func (d *CachedDependency) validate() error {
	if err := validateFrom(d.From); err != nil {
		return err
	}
	if err := ValidateFilePath(d.To); err != nil {
		return err
	}
	if r, ok := ReservedMountPath(d.To); ok {
		return NewError(ErrInvalidRequest, "to %q is reserved (%s)", d.To, r)
	}
	if d.CacheKey == "" || len(d.CacheKey) > maxSetupString || len(d.Name) > maxSetupString {
		return NewError(ErrInvalidRequest, "cache_key is required and at most %d bytes (name too)", maxSetupString)
	}
	return d.Checksum.Validate()
}

// validateFrom accepts an absolute http or https URL.
func validateFrom(from string) error {
	if len(from) > maxDownloadURL {
		return NewError(ErrInvalidRequest, "download URL is longer than %d bytes", maxDownloadURL)
	}
	u, err := url.Parse(from)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return NewError(ErrInvalidRequest, "download URL %q: want an absolute http or https URL", RedactURL(from))
	}
	return nil
}

// RedactURL drops a URL's query, fragment and user info, for messages:
// blobstore URLs carry signatures there, and failure reasons and logs
// reach the control plane and the app's log.
func RedactURL(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	if scheme, rest, ok := strings.Cut(raw, "://"); ok {
		if at := strings.LastIndex(strings.SplitN(rest, "/", 2)[0], "@"); at >= 0 {
			rest = rest[at+1:]
		}
		return scheme + "://" + rest
	}
	return raw
}

// DownloadTarget answers the absolute, clean path a download's to means
// for a user whose home directory is home: an absolute to as it is, a
// relative one under home (Diego streams a relative path into the user's
// home). A to holding "..", NUL or nothing is refused.
func DownloadTarget(to, home string) (string, error) {
	switch {
	case to == "" || len(to) > maxFilePath || strings.ContainsRune(to, 0):
		return "", NewError(ErrInvalidRequest, "download to %q: want a path of 1-%d bytes without NUL", to, maxFilePath)
	case strings.HasPrefix(to, "~"):
		return "", NewError(ErrInvalidRequest, "download to %q: ~ is not expanded; use a path relative to the home directory", to)
	}
	for _, el := range strings.Split(to, "/") {
		if el == ".." {
			return "", NewError(ErrInvalidRequest, "download to %q: '..' is not allowed", to)
		}
	}
	if !path.IsAbs(to) {
		if !path.IsAbs(home) {
			return "", NewError(ErrInvalidRequest, "download to %q: the user's home %q is not absolute", to, home)
		}
		to = path.Join(home, to)
	}
	return path.Clean(to), nil
}
