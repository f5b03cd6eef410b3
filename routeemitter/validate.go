package routeemitter

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/cellagent/cellagent/executor"
)

// ErrInvalidRoute is wrapped by every validation error of this package; the
// agent maps it to InvalidRequest.
var ErrInvalidRoute = errors.New("invalid route")

const (
	// MaxHostnames bounds the hostnames of one instance, over all its routes.
	MaxHostnames = 1000
	// MaxPathLength bounds the path part of a route (Gorouter has no limit,
	// but a registration must fit in one NATS message).
	MaxPathLength = 255

	maxHostnameLength = 253
	maxLabelLength    = 63
	// maxReportedErrors keeps the error of a huge bad request readable.
	maxReportedErrors = 10
)

// ValidateRoutes checks every route: its port must be one of ports (the
// instance's container ports), it must name at least one hostname, every
// hostname must pass ValidateHostname, the optional fields must be what
// Gorouter accepts (validateRouteFields), and there may be at most
// MaxHostnames in total. All problems are returned at once, each wrapping ErrInvalidRoute.
func ValidateRoutes(routes []Route, ports []uint16) error {
	var errs []error
	total := 0
	for i, r := range routes {
		total += len(r.Hostnames)
		if !slices.Contains(ports, r.Port) {
			errs = append(errs, fmt.Errorf("%w: route %d: port %d is not a port of the instance", ErrInvalidRoute, i, r.Port))
		}
		if len(r.Hostnames) == 0 {
			errs = append(errs, fmt.Errorf("%w: route %d: no hostnames", ErrInvalidRoute, i))
		}
		for _, h := range r.Hostnames {
			if err := ValidateHostname(h); err != nil {
				errs = append(errs, fmt.Errorf("route %d: %w", i, err))
			}
		}
		if err := validateRouteFields(r); err != nil {
			errs = append(errs, fmt.Errorf("%w: route %d: %w", ErrInvalidRoute, i, err))
		}
	}
	if total > MaxHostnames {
		errs = append(errs, fmt.Errorf("%w: %d hostnames, at most %d allowed", ErrInvalidRoute, total, MaxHostnames))
	}
	if len(errs) > maxReportedErrors {
		more := len(errs) - maxReportedErrors
		errs = append(errs[:maxReportedErrors], fmt.Errorf("%w: and %d more problems", ErrInvalidRoute, more))
	}
	return errors.Join(errs...)
}

// ValidateHostname checks one route hostname as Gorouter takes it in "uris":
// a DNS name (labels of 1-63 letters, digits and '-', not starting or ending
// with '-', at most 253 characters), optionally starting with one "*." label,
// optionally followed by a path "/seg/..." of printable ASCII without spaces,
// '?' or '#', without empty segments, at most MaxPathLength characters.
func ValidateHostname(h string) error {
	host, path, hasPath := strings.Cut(h, "/")
	if err := validateHost(host); err != nil {
		return fmt.Errorf("%w: hostname %q: %w", ErrInvalidRoute, h, err)
	}
	if hasPath {
		if err := validatePath("/" + path); err != nil {
			return fmt.Errorf("%w: hostname %q: %w", ErrInvalidRoute, h, err)
		}
	}
	return nil
}

func validateHost(host string) error {
	if host == "" {
		return errors.New("empty host")
	}
	if len(host) > maxHostnameLength {
		return fmt.Errorf("host longer than %d characters", maxHostnameLength)
	}
	name := strings.TrimPrefix(host, "*.")
	if name == "" {
		return errors.New("wildcard without a domain")
	}
	for label := range strings.SplitSeq(name, ".") {
		if err := validateLabel(label); err != nil {
			return err
		}
	}
	return nil
}

func validateLabel(label string) error {
	switch {
	case label == "":
		return errors.New("empty label")
	case len(label) > maxLabelLength:
		return fmt.Errorf("label %q longer than %d characters", label, maxLabelLength)
	case label[0] == '-' || label[len(label)-1] == '-':
		return fmt.Errorf("label %q starts or ends with '-'", label)
	}
	for _, c := range []byte(label) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
		if !ok {
			return fmt.Errorf("label %q has character %q", label, c)
		}
	}
	return nil
}

func validatePath(path string) error {
	if len(path) > MaxPathLength {
		return fmt.Errorf("path longer than %d characters", MaxPathLength)
	}
	for _, c := range []byte(path) {
		if c <= ' ' || c > '~' || c == '?' || c == '#' {
			return fmt.Errorf("path has character %q", c)
		}
	}
	for seg := range strings.SplitSeq(path[1:], "/") {
		if seg == "" {
			return errors.New("path has an empty segment")
		}
	}
	return nil
}

// Protocols are the values of a route's protocol ("" means http1).
var Protocols = []string{"http1", "http2"}

// LoadBalancingAlgorithms are Gorouter's (config.LoadBalancingStrategies).
var LoadBalancingAlgorithms = []string{"round-robin", "least-connection"}

// maxFieldLength bounds the free-text route fields.
const maxFieldLength = 1024

// validateRouteFields checks the per-route fields Gorouter reads. Gorouter
// drops a registration whose route_service_url does not start with "https"
// (RegistryMessage.ValidateMessage), which would silently unroute the app,
// and ignores an unknown load balancing algorithm: both are refused here.
func validateRouteFields(r Route) error {
	var errs []error
	if u := r.RouteServiceURL; u != "" {
		parsed, err := url.Parse(u)
		switch {
		case len(u) > maxFieldLength:
			errs = append(errs, fmt.Errorf("route_service_url longer than %d characters", maxFieldLength))
		case err != nil:
			errs = append(errs, fmt.Errorf("route_service_url %q: %w", u, err))
		case parsed.Scheme != "https" || parsed.Host == "":
			errs = append(errs, fmt.Errorf("route_service_url %q: must be an https URL with a host", u))
		}
	}
	if seg := r.IsolationSegment; seg != "" {
		if len(seg) > maxFieldLength || strings.IndexFunc(seg, func(c rune) bool { return c < ' ' || c == 0x7f }) >= 0 {
			errs = append(errs, fmt.Errorf("isolation_segment %q: at most %d characters, no control characters", seg, maxFieldLength))
		}
	}
	if r.Protocol != "" && !slices.Contains(Protocols, r.Protocol) {
		errs = append(errs, fmt.Errorf("protocol %q: must be one of %v", r.Protocol, Protocols))
	}
	if o := r.Options; o != nil && o.LoadBalancing != "" && !slices.Contains(LoadBalancingAlgorithms, o.LoadBalancing) {
		errs = append(errs, fmt.Errorf("options.loadbalancing %q: must be one of %v", o.LoadBalancing, LoadBalancingAlgorithms))
	}
	return errors.Join(errs...)
}

// ValidateInternalRoutes checks internal route hostnames: DNS names (no
// path), at most MaxHostnames.
func ValidateInternalRoutes(routes []executor.InternalRoute) error {
	var errs []error
	if len(routes) > MaxHostnames {
		errs = append(errs, fmt.Errorf("%w: %d internal routes, at most %d allowed", ErrInvalidRoute, len(routes), MaxHostnames))
	}
	for i, r := range routes {
		if err := validateHost(r.Hostname); err != nil || strings.HasPrefix(r.Hostname, "*.") {
			errs = append(errs, fmt.Errorf("%w: internal route %d: hostname %q must be a DNS name without wildcard or path", ErrInvalidRoute, i, r.Hostname))
		}
		if len(errs) >= maxReportedErrors {
			break
		}
	}
	return errors.Join(errs...)
}
