package executor

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes of the HTTP API. Each has one sentinel below and one status.
const (
	CodeInvalidRequest        = "InvalidRequest"
	CodeContainerNotFound     = "ContainerNotFound"
	CodeContainerExists       = "ContainerExists"
	CodeInvalidTransition     = "InvalidTransition"
	CodeInsufficientResources = "InsufficientResources"
	CodeEvacuating            = "Evacuating"
	CodeRequestTooLarge       = "RequestTooLarge"
	CodeUnavailable           = "Unavailable"
	CodeInternal              = "InternalError"
	CodeUnsupportedMediaType  = "UnsupportedMediaType"
	CodeForbidden             = "Forbidden"
	CodeTooManyStreams        = "TooManyStreams"
)

// Error is a failure with an API code. The sentinels below are *Error values;
// wrap them with fmt.Errorf("...: %w", ErrX) and errors.Is finds them.
type Error struct {
	Code   string `json:"code"`
	Status int    `json:"-"`
	// Message is the human-readable text. For sentinels it is a short default.
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Is matches any *Error with the same code, so an error decoded from an HTTP
// answer is errors.Is-equal to the sentinel.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

var (
	ErrInvalidRequest        = &Error{CodeInvalidRequest, http.StatusBadRequest, "invalid request"}
	ErrContainerNotFound     = &Error{CodeContainerNotFound, http.StatusNotFound, "container not found"}
	ErrContainerExists       = &Error{CodeContainerExists, http.StatusConflict, "container already exists"}
	ErrInvalidTransition     = &Error{CodeInvalidTransition, http.StatusConflict, "invalid state transition"}
	ErrInsufficientResources = &Error{CodeInsufficientResources, http.StatusConflict, "insufficient resources"}
	ErrEvacuating            = &Error{CodeEvacuating, http.StatusConflict, "cell is evacuating"}
	ErrRequestTooLarge       = &Error{CodeRequestTooLarge, http.StatusRequestEntityTooLarge, "request too large"}
	ErrUnavailable           = &Error{CodeUnavailable, http.StatusServiceUnavailable, "unavailable"}
	ErrInternal              = &Error{CodeInternal, http.StatusInternalServerError, "internal error"}
	// ErrUnsupportedMediaType: a body that is not the endpoint's type
	// (application/json; application/x-tar for image archives).
	ErrUnsupportedMediaType = &Error{CodeUnsupportedMediaType, http.StatusUnsupportedMediaType, "unsupported media type"}
	// ErrForbidden: a request a browser made (Origin header) or one for a
	// host name that is not loopback on the plain admin listener.
	ErrForbidden = &Error{CodeForbidden, http.StatusForbidden, "forbidden"}
	// ErrTooManyStreams: the event-stream subscriber cap is reached.
	ErrTooManyStreams = &Error{CodeTooManyStreams, http.StatusServiceUnavailable, "too many event streams"}
)

var allErrors = []*Error{ErrInvalidRequest, ErrContainerNotFound, ErrContainerExists, ErrInvalidTransition,
	ErrInsufficientResources, ErrEvacuating, ErrRequestTooLarge, ErrUnavailable, ErrInternal,
	ErrUnsupportedMediaType, ErrForbidden, ErrTooManyStreams}

// ErrorFor finds the API error an error chain carries; anything unknown is
// an internal error. The message is the full chain's text.
func ErrorFor(err error) *Error {
	for _, e := range allErrors {
		if errors.Is(err, e) {
			return &Error{Code: e.Code, Status: e.Status, Message: err.Error()}
		}
	}
	return &Error{Code: ErrInternal.Code, Status: ErrInternal.Status, Message: err.Error()}
}

// NewError makes an error with the code of sentinel and its own message,
// e.g. NewError(ErrInvalidRequest, "memory_mb must be positive").
func NewError(sentinel *Error, format string, args ...any) error {
	return &Error{Code: sentinel.Code, Status: sentinel.Status, Message: fmt.Sprintf(format, args...)}
}

// ErrorFromCode rebuilds an API error received over HTTP.
func ErrorFromCode(code, message string, status int) error {
	for _, e := range allErrors {
		if e.Code == code {
			return &Error{Code: code, Status: e.Status, Message: message}
		}
	}
	return &Error{Code: code, Status: status, Message: message}
}
