package executor

import (
	"net/url"
	"strings"
)

// ParseCheckPath reads an HTTP check's path as the path (and query) of a
// request to the instance's own address. It must start with a single "/":
// anything else could name another host once put after "http://IP:PORT"
// ("@127.0.0.1:1800/v1/..." makes the agent's own API the check target,
// "//other/x" a network-path reference). Empty means "/".
func ParseCheckPath(p string) (*url.URL, error) {
	if p == "" {
		p = "/"
	}
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return nil, NewError(ErrInvalidRequest, "check path %q must start with a single /", p)
	}
	if len(p) > 1024 {
		return nil, NewError(ErrInvalidRequest, "check path is longer than 1024 bytes")
	}
	u, err := url.ParseRequestURI(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return nil, NewError(ErrInvalidRequest, "check path %q is not a URL path", p)
	}
	return u, nil
}
