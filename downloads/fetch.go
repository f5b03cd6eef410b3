package downloads

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/cellagent/cellagent/executor"
)

// Source is what to download: an http(s) URL, its cache key (empty: not
// cached) and its expected checksum (empty: not checked).
type Source struct {
	URL      string
	CacheKey string
	Checksum executor.Checksum
}

// ErrChecksum is a downloaded artifact whose digest is not the expected one.
var ErrChecksum = errors.New("checksum mismatch")

// validators are what a revalidation sends back to the server.
type validators struct {
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
}

// download is one GET's outcome.
type download struct {
	notModified bool
	path        string // the temporary file with the body (not when notModified)
	size        int64
	digests     map[string]string // algorithm -> hex, for every algorithm Diego accepts
	validators  validators
}

// get fetches src.URL into a temporary file in tmpDir, hashing it with
// every accepted algorithm on the way. With prev set it asks the server
// whether its copy is still current (If-None-Match / If-Modified-Since):
// a 304 answers notModified and no file.
func (c *Cache) get(ctx context.Context, src Source, prev *validators) (download, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.URL, nil)
	if err != nil {
		return download{}, getError(src, err)
	}
	if prev != nil {
		if prev.ETag != "" {
			req.Header.Set("If-None-Match", prev.ETag)
		}
		if prev.LastModified != "" {
			req.Header.Set("If-Modified-Since", prev.LastModified)
		}
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return download{}, getError(src, err)
	}
	defer resp.Body.Close()
	// A server that stalls after its headers must not hold a download
	// slot and the key's lock forever: no byte for IdleTimeout ends it.
	progress, stopWatch := make(chan struct{}, 1), make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		c.watchIdle(cancel, progress, stopWatch)
	}()
	defer func() { close(stopWatch); <-watched }()
	body := &progressReader{r: resp.Body, progress: progress}
	switch {
	case resp.StatusCode == http.StatusNotModified && prev != nil:
		return download{notModified: true, validators: *prev}, nil
	case resp.StatusCode != http.StatusOK:
		return download{}, fmt.Errorf("GET %s: status %s", redact(src.URL), resp.Status)
	case resp.ContentLength > c.cfg.MaxArtifactBytes:
		return download{}, fmt.Errorf("GET %s: %d bytes is more than the %d a download may have", redact(src.URL), resp.ContentLength, c.cfg.MaxArtifactBytes)
	}
	f, err := os.CreateTemp(c.tmpDir(), "download-*")
	if err != nil {
		return download{}, err
	}
	hashes := map[string]hash.Hash{"md5": md5.New(), "sha1": sha1.New(), "sha256": sha256.New()}
	w := io.MultiWriter(f, hashes["md5"], hashes["sha1"], hashes["sha256"])
	n, err := io.Copy(w, io.LimitReader(body, c.cfg.MaxArtifactBytes+1))
	if cause := context.Cause(ctx); err != nil && cause != nil {
		err = cause // the idle deadline's or the caller's reason
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > c.cfg.MaxArtifactBytes {
		err = fmt.Errorf("more than the %d bytes a download may have", c.cfg.MaxArtifactBytes)
	}
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("got %d of %d bytes", n, resp.ContentLength)
	}
	if err != nil {
		os.Remove(f.Name())
		return download{}, getError(src, err)
	}
	d := download{path: f.Name(), size: n, digests: map[string]string{},
		validators: validators{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}}
	for alg, h := range hashes {
		d.digests[alg] = hex.EncodeToString(h.Sum(nil))
	}
	if err := verify(src, d.digests); err != nil {
		os.Remove(d.path)
		return download{}, err
	}
	return d, nil
}

// verify compares the expected checksum, if any, with the digests.
func verify(src Source, digests map[string]string) error {
	want := src.Checksum
	if want.Algorithm == "" {
		return nil
	}
	got, ok := digests[want.Algorithm]
	if !ok {
		return fmt.Errorf("checksum algorithm %q: want md5, sha1 or sha256", want.Algorithm)
	}
	if !strings.EqualFold(got, want.Value) {
		return fmt.Errorf("%w: %s of %s is %s, expected %s", ErrChecksum, want.Algorithm, redact(src.URL), got, want.Value)
	}
	return nil
}

// getError wraps a failed GET's error with src's URL redacted: net/http's
// *url.Error names the URL with its query (a blobstore's signature) and,
// after a redirect, the presigned URL it was sent to; only its inner error
// is kept.
func getError(src Source, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("GET %s: %w", redact(src.URL), err)
}

// errIdle is a download that received no byte for the idle timeout.
var errIdle = errors.New("no data received")

// watchIdle cancels the download (cancel) when progress stays silent for
// the idle timeout; it returns when stop is closed or it cancelled.
func (c *Cache) watchIdle(cancel context.CancelCauseFunc, progress <-chan struct{}, stop <-chan struct{}) {
	idle := c.cfg.IdleTimeout
	timer := c.cfg.Clock.NewTimer(idle)
	defer timer.Stop()
	for {
		select {
		case <-stop:
			return
		case <-progress:
			timer.Reset(idle)
		case <-timer.C():
			cancel(fmt.Errorf("%w for %s", errIdle, idle))
			return
		}
	}
}

// progressReader signals progress (without blocking) on every read that
// returned bytes.
type progressReader struct {
	r        io.Reader
	progress chan<- struct{}
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		select {
		case p.progress <- struct{}{}:
		default:
		}
	}
	return n, err
}

// redact drops a URL's query and user info from messages: blobstore URLs
// carry signatures there, and failure reasons reach the control plane.
func redact(raw string) string { return executor.RedactURL(raw) }
