package httpapi

import (
	"mime"
	"net"
	"net/http"
	"strings"

	"github.com/cellagent/cellagent/executor"
)

// ImageContentType is the type POST /v1/images takes: the archive as it
// is, never JSON, so a browser form (text/plain, urlencoded, multipart)
// cannot post one either.
const ImageContentType = "application/x-tar"

// The API is driven by cellctl and orchestrators, never by a browser. A web
// page the operator has open can still reach a loopback listener: a
// "simple" cross-origin POST (text/plain body) is sent without a
// preflight, and a DNS-rebound name makes the page same-origin with
// 127.0.0.1. So: every body must carry the endpoint's own content type
// (which a simple request cannot), a request that carries an Origin header
// (which every browser adds to a cross-origin or non-GET request) is
// refused, and the plain admin listener answers only to a loopback Host
// (LoopbackHostOnly).

// refuseOrigin answers 403 Forbidden to any request with an Origin header.
func refuseOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" {
			writeError(w, executor.NewError(executor.ErrForbidden, "requests from a browser (Origin %q) are refused: the API is for cellctl and orchestrators", o))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireContentType answers 415 UnsupportedMediaType to a request that has
// a body, or names a content type, other than the endpoint's:
// application/json everywhere, application/x-tar for POST /v1/images.
func requireContentType(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct := r.Header.Get("Content-Type")
		if r.ContentLength == 0 && ct == "" {
			next.ServeHTTP(w, r)
			return
		}
		want := "application/json"
		if r.Method == http.MethodPost && r.URL.Path == "/v1/images" {
			want = ImageContentType
		}
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != want {
			writeError(w, executor.NewError(executor.ErrUnsupportedMediaType, "%s %s takes Content-Type: %s, got %q", r.Method, r.URL.Path, want, ct))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// LoopbackHostOnly answers 403 Forbidden unless the Host header names a
// loopback address (127.0.0.0/8, ::1 or localhost, with or without a port).
// It guards the plain-HTTP admin listener against DNS rebinding: a page on
// evil.example whose name now resolves to 127.0.0.1 still sends
// "Host: evil.example".
func LoopbackHostOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isLoopbackHost(r.Host) {
			writeError(w, executor.NewError(executor.ErrForbidden, "host %q is not a loopback address: the plain admin listener answers only to 127.0.0.1, ::1 or localhost", r.Host))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isLoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
