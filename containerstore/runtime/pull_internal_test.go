package runtime

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cellagent/cellagent/executor"
)

func TestDockerRefTakesOnlyNormalizedReferences(t *testing.T) {
	for image, want := range map[string]string{
		"docker://docker.io/library/busybox:latest": "docker.io/library/busybox:latest",
		"docker://127.0.0.1:5000/app:v1":            "127.0.0.1:5000/app:v1",
	} {
		ref, ok, err := dockerRef(image)
		if err != nil || !ok || ref != want {
			t.Errorf("dockerRef(%q) = %q, %v, %v; want %q", image, ref, ok, err, want)
		}
	}
	for _, image := range []string{"preloaded:busybox", "registry.example.com/app:1"} {
		if _, ok, err := dockerRef(image); ok || err != nil {
			t.Errorf("dockerRef(%q) = %v, %v: not a docker image", image, ok, err)
		}
	}
	for image, msg := range map[string]string{
		"docker://busybox":            "want the normalized reference docker://docker.io/library/busybox:latest",
		"docker://127.0.0.1:5000/App": "invalid reference format",
		"docker://":                   "invalid reference format",
	} {
		_, ok, err := dockerRef(image)
		if !ok || !errors.Is(err, executor.ErrInvalidRequest) || !strings.Contains(err.Error(), msg) {
			t.Errorf("dockerRef(%q) = %v, %v; want an InvalidRequest saying %q", image, ok, err, msg)
		}
	}
}

func TestPullErrorNamesTheCause(t *testing.T) {
	const ref = "127.0.0.1:5000/app:v1"
	for _, c := range []struct {
		scheme string
		err    error
		want   string
	}{
		{"http", fmt.Errorf("failed to resolve reference: %w", errdefs.ErrNotFound), "not found in its registry"},
		{"http", fmt.Errorf("pull: %w", docker.ErrInvalidAuthorization), "registry refused the login"},
		{"http", errors.New("unexpected status from HEAD request: 401 Unauthorized"), "registry refused the login"},
		{"http", context.DeadlineExceeded, "did not finish within the pull timeout"},
		{"https", errors.New("http: server gave HTTP response to HTTPS client"), "list it in containerd.insecure_registries"},
		{"http", errors.New("connection refused"), "pull image " + ref + ": connection refused"},
	} {
		if got := pullError(ref, c.scheme, c.err).Error(); !strings.Contains(got, c.want) {
			t.Errorf("pullError(%v) = %q; want it to say %q", c.err, got, c.want)
		}
	}
}

// TestRegistryHostsLogInOnlyToTheImagesRegistry: a pull's login goes to
// the image's own registry, over the scheme chosen for it, and nowhere
// else.
func TestRegistryHostsLogInOnlyToTheImagesRegistry(t *testing.T) {
	var gotAuth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); ok {
			gotAuth = append(gotAuth, u+":"+p)
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	c := &Client{}
	auth := &executor.RegistryAuth{Username: "puller", Password: "s3cret"}
	hosts, err := c.registryHosts(host, "http", auth)(host)
	if err != nil || len(hosts) != 1 || hosts[0].Scheme != "http" || hosts[0].Host != host {
		t.Fatalf("hosts = %+v, %v; want one http host %s", hosts, err, host)
	}
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: c.registryHosts(host, "http", auth)})
	// The fake answers 200 without a manifest: the resolve fails either
	// way; what counts is the login it sent.
	_, _, _ = resolver.Resolve(context.Background(), host+"/app:v1")
	if len(gotAuth) == 0 || gotAuth[0] != "puller:s3cret" {
		t.Fatalf("the registry got logins %v; want puller:s3cret", gotAuth)
	}
	gotAuth = nil
	other := docker.NewResolver(docker.ResolverOptions{Hosts: c.registryHosts("registry.example.com", "http", auth)})
	_, _, _ = other.Resolve(context.Background(), host+"/app:v1")
	if len(gotAuth) != 0 {
		t.Fatalf("a login for registry.example.com was sent to %s: %v", host, gotAuth)
	}
	if hosts, _ := c.registryHosts("docker.io", "https", nil)("docker.io"); hosts[0].Host != "registry-1.docker.io" || hosts[0].Scheme != "https" {
		t.Fatalf("docker.io maps to %+v; want https://registry-1.docker.io", hosts[0])
	}
}

// Reviewer finding: containerd's Pull writes the image record before the
// layer check; a start that found it (a concurrent one, or the next after
// a kill between fetch and check) unpacked it unchecked. A record the
// pull path made is usable only once the check marked its target.
func TestUsableTakesAPulledImageOnlyOnceChecked(t *testing.T) {
	target := ocispec.Descriptor{Digest: digest.FromString("index")}
	other := digest.FromString("another index").String()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   bool
	}{
		{"imported (checked at import)", map[string]string{labelOwner: "cell"}, true},
		{"no labels", nil, true},
		{"pulled, not checked yet", map[string]string{labelPulled: "true", labelLogin: "required"}, false},
		{"pulled and checked", map[string]string{labelPulled: "true", labelChecked: target.Digest.String()}, true},
		{"pulled again to another target, checked only the old one", map[string]string{labelPulled: "true", labelChecked: other}, false},
	} {
		if got := usable(images.Image{Name: "r", Target: target, Labels: c.labels}); got != c.want {
			t.Errorf("%s: usable = %v, want %v", c.name, got, c.want)
		}
	}
}

// Reviewer finding: a pull had no byte limit. The budget refuses a blob
// larger than the cap before it is fetched, and a manifest whose blobs add
// up past the cap before any of them is.
func TestPullBudgetRefusesBeforeFetching(t *testing.T) {
	manifest := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("m"), Size: 500}
	layer := func(s string, size int64) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString(s), Size: size}
	}
	var fetched []digest.Digest
	children := map[digest.Digest][]ocispec.Descriptor{}
	inner := images.HandlerFunc(func(_ context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		fetched = append(fetched, d.Digest)
		return children[d.Digest], nil
	})

	b := &pullBudget{max: 1000}
	if _, err := b.wrap(inner).Handle(context.Background(), layer("huge", 1001)); !errors.Is(err, executor.ErrInvalidRequest) || len(fetched) != 0 {
		t.Fatalf("a 1001-byte blob under a 1000-byte cap: err %v, fetched %v; want InvalidRequest, nothing fetched", err, fetched)
	}

	children[manifest.Digest] = []ocispec.Descriptor{layer("config", 100), layer("a", 600), layer("b", 600)}
	b = &pullBudget{max: 1000}
	got, err := b.wrap(inner).Handle(context.Background(), manifest)
	if !errors.Is(err, executor.ErrInvalidRequest) || !strings.Contains(err.Error(), "a pull fetches at most 1000") || got != nil {
		t.Fatalf("layers of 1300 bytes under a 1000-byte cap: children %v, err %v; want none and InvalidRequest", got, err)
	}

	children[manifest.Digest] = []ocispec.Descriptor{layer("config", 100), layer("a", 400), layer("b", 400)}
	b = &pullBudget{max: 1000}
	got, err = b.wrap(inner).Handle(context.Background(), manifest)
	if err != nil || len(got) != 3 {
		t.Fatalf("layers of 900 bytes under a 1000-byte cap: children %v, err %v; want all 3", got, err)
	}
}
