package downloads_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestDownloads(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Downloads Suite")
}

// entry is one archive member: a file (Body), a directory (Dir), a
// symbolic link (Link) or a hard link (HardLink).
type entry struct {
	Name, Body, Link, HardLink string
	Dir                        bool
	Mode                       int64
	Type                       byte
}

func tarBytes(entries ...entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Mode: e.Mode, Typeflag: tar.TypeReg, Size: int64(len(e.Body))}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		switch {
		case e.Type != 0:
			h.Typeflag, h.Size = e.Type, 0
		case e.Dir:
			h.Typeflag, h.Size = tar.TypeDir, 0
		case e.Link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.Link, 0
		case e.HardLink != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, e.HardLink, 0
		}
		Expect(tw.WriteHeader(h)).To(Succeed())
		if h.Size > 0 {
			_, err := tw.Write([]byte(e.Body))
			Expect(err).NotTo(HaveOccurred())
		}
	}
	Expect(tw.Close()).To(Succeed())
	return buf.Bytes()
}

func tgz(entries ...entry) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	_, err := gz.Write(tarBytes(entries...))
	Expect(err).NotTo(HaveOccurred())
	Expect(gz.Close()).To(Succeed())
	return buf.Bytes()
}

func zipBytes(files map[string]string) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		w, err := zw.Create(name)
		Expect(err).NotTo(HaveOccurred())
		_, err = w.Write([]byte(body))
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(zw.Close()).To(Succeed())
	return buf.Bytes()
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// artifactServer serves one body per path, with an ETag per version, and
// answers 304 to a request naming the current ETag. It records the
// requests' conditional headers.
type artifactServer struct {
	*httptest.Server
	mu       sync.Mutex
	bodies   map[string][]byte
	versions map[string]int
	lastMod  bool // send Last-Modified instead of ETag
	requests []http.Header
	full     int // 200 answers
}

func newArtifactServer() *artifactServer {
	s := &artifactServer{bodies: map[string][]byte{}, versions: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.requests = append(s.requests, r.Header.Clone())
		body, ok := s.bodies[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		etag := fmt.Sprintf(`"v%d"`, s.versions[r.URL.Path])
		lm := fmt.Sprintf("Mon, 0%d Jan 2024 00:00:00 GMT", s.versions[r.URL.Path]+1)
		if s.lastMod {
			if r.Header.Get("If-Modified-Since") == lm {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("Last-Modified", lm)
		} else {
			if r.Header.Get("If-None-Match") == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("ETag", etag)
		}
		s.full++
		_, _ = w.Write(body)
	}))
	DeferCleanup(s.Close)
	return s
}

func (s *artifactServer) put(path string, body []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.bodies[path]; ok {
		s.versions[path]++
	}
	s.bodies[path] = body
	return s.URL + path
}

func (s *artifactServer) fullAnswers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.full
}

func (s *artifactServer) lastRequest() http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[len(s.requests)-1]
}

// httpHang answers no request until release is closed or the client goes.
func httpHang(release chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
}
