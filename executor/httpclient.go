package executor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// HTTPClient talks to a cellagent's HTTP API.
type HTTPClient struct {
	base string
	http *http.Client
}

var _ Client = (*HTTPClient)(nil)

// NewHTTPClient makes a client for baseURL, e.g. "http://127.0.0.1:1800".
// A nil httpClient means http.DefaultClient.
func NewHTTPClient(baseURL string, httpClient *http.Client) *HTTPClient {
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return &HTTPClient{base: strings.TrimRight(baseURL, "/"), http: httpClient}
}

type errorBody struct {
	Error *Error `json:"error"`
}

func (c *HTTPClient) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s answer: %w", method, path, err)
	}
	return nil
}

// send makes the request and turns non-2xx answers into API errors.
func (c *HTTPClient) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	contentType := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body, contentType = bytes.NewReader(b), "application/json"
	}
	return c.sendBody(ctx, method, path, body, contentType)
}

// sendBody makes the request with body as it is and turns non-2xx answers
// into API errors.
func (c *HTTPClient) sendBody(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb errorBody
	if json.Unmarshal(raw, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
		return nil, ErrorFromCode(eb.Error.Code, eb.Error.Message, resp.StatusCode)
	}
	return nil, fmt.Errorf("%s %s: unexpected status %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(raw))
}

func containerPath(guid string) string { return "/v1/containers/" + url.PathEscape(guid) }

func (c *HTTPClient) Ping(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/v1/ping", nil, nil)
}

func (c *HTTPClient) State(ctx context.Context) (CellState, error) {
	var s CellState
	err := c.do(ctx, http.MethodGet, "/v1/state", nil, &s)
	return s, err
}

type allocationsBody struct {
	Failures []AllocationFailure `json:"failures"`
}

func (c *HTTPClient) Allocate(ctx context.Context, reqs []AllocationRequest) ([]AllocationFailure, error) {
	var out allocationsBody
	err := c.do(ctx, http.MethodPost, "/v1/allocations", map[string]any{"allocations": reqs}, &out)
	return out.Failures, err
}

func (c *HTTPClient) Run(ctx context.Context, guid string, req RunRequest) error {
	return c.do(ctx, http.MethodPost, containerPath(guid)+"/run", req, nil)
}

func (c *HTTPClient) AllocateAndRun(ctx context.Context, guid string, req RunRequest) (Container, error) {
	var ctr Container
	err := c.do(ctx, http.MethodPut, containerPath(guid), req, &ctr)
	return ctr, err
}

func (c *HTTPClient) List(ctx context.Context) ([]Container, error) {
	var out struct {
		Containers []Container `json:"containers"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/containers", nil, &out)
	return out.Containers, err
}

func (c *HTTPClient) Get(ctx context.Context, guid string) (Container, error) {
	var ctr Container
	err := c.do(ctx, http.MethodGet, containerPath(guid), nil, &ctr)
	return ctr, err
}

func (c *HTTPClient) Stop(ctx context.Context, guid string) error {
	return c.do(ctx, http.MethodPost, containerPath(guid)+"/stop", nil, nil)
}

func (c *HTTPClient) Delete(ctx context.Context, guid string) error {
	return c.do(ctx, http.MethodDelete, containerPath(guid), nil, nil)
}

func (c *HTTPClient) Logs(ctx context.Context, guid string, opts LogOptions) (io.ReadCloser, error) {
	q := url.Values{}
	if opts.Follow {
		q.Set("follow", "1")
	}
	if opts.Source != "" {
		q.Set("source", opts.Source)
	}
	path := containerPath(guid) + "/logs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	return &logStream{resp: resp}, nil
}

// logStream reads a log response; its end is ErrAgentShutdown instead of
// io.EOF when the agent ended it with the shutdown trailer.
type logStream struct{ resp *http.Response }

func (l *logStream) Read(p []byte) (int, error) {
	n, err := l.resp.Body.Read(p)
	if err == io.EOF && l.resp.Trailer.Get(StreamEndTrailer) == StreamEndShutdown {
		err = ErrAgentShutdown
	}
	return n, err
}

func (l *logStream) Close() error { return l.resp.Body.Close() }

// Events reads the server-sent event stream. The channel closes when ctx
// ends or the stream breaks; callers resume with the last Seq they saw.
func (c *HTTPClient) Events(ctx context.Context, since uint64) (<-chan Event, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v1/events?since="+strconv.FormatUint(since, 10), nil)
	if err != nil {
		return nil, err
	}
	ch := make(chan Event)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		_ = ReadSSE(resp.Body, func(ev Event) bool {
			select {
			case ch <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		})
	}()
	return ch, nil
}

// ReadSSE parses a server-sent event stream whose data lines are JSON
// events, calling fn for each until fn returns false or the stream ends.
func ReadSSE(r io.Reader, fn func(Event) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var data bytes.Buffer
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if data.Len() > 0 {
				var ev Event
				if err := json.Unmarshal(data.Bytes(), &ev); err != nil {
					return fmt.Errorf("decode event: %w", err)
				}
				data.Reset()
				if !fn(ev) {
					return nil
				}
			}
		case bytes.HasPrefix(line, []byte("data:")):
			data.Write(bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" ")))
		}
	}
	return sc.Err()
}

// ImportImage sends an image archive (OCI image layout or docker save tar)
// to POST /v1/images; name, when set, names its image index.
func (c *HTTPClient) ImportImage(ctx context.Context, archive io.Reader, name string) ([]Image, error) {
	path := "/v1/images"
	if name != "" {
		path += "?name=" + url.QueryEscape(name)
	}
	resp, err := c.sendBody(ctx, http.MethodPost, path, archive, "application/x-tar")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Images []Image `json:"images"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode POST %s answer: %w", path, err)
	}
	return out.Images, nil
}

// Evacuate asks the cell to refuse new work and drain (POST /v1/evacuate).
func (c *HTTPClient) Evacuate(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/evacuate", nil, nil)
}

// Explain answers an instance's timeline and what blocks it from being routable.
func (c *HTTPClient) Explain(ctx context.Context, guid string) (Explanation, error) {
	var e Explanation
	err := c.do(ctx, http.MethodGet, containerPath(guid)+"/explain", nil, &e)
	return e, err
}

// NetworkFilter answers guid's network filter and its denial counts.
func (c *HTTPClient) NetworkFilter(ctx context.Context, guid string) (NetworkFilter, error) {
	var f NetworkFilter
	err := c.do(ctx, http.MethodGet, containerPath(guid)+"/network", nil, &f)
	return f, err
}

// SetEgress replaces guid's own egress rules on the running instance.
func (c *HTTPClient) SetEgress(ctx context.Context, guid string, rules []EgressRule) (NetworkFilter, error) {
	var f NetworkFilter
	body := struct {
		EgressRules []EgressRule `json:"egress_rules"`
	}{nonNilRules(rules)}
	err := c.do(ctx, http.MethodPut, containerPath(guid)+"/egress", body, &f)
	return f, err
}

func nonNilRules(r []EgressRule) []EgressRule {
	if r == nil {
		return []EgressRule{}
	}
	return r
}
