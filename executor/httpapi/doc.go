// Package httpapi serves cellagent's HTTP API over an executor.Client:
// request decoding (1 MiB limit, unknown fields rejected), validation
// of path identifiers, JSON errors {"error":{"code","message"}} and the
// server-sent event stream.
package httpapi
