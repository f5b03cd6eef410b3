package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/executor"
)

// DefaultPullTimeout bounds one image pull (resolve, fetch, check, unpack)
// when Config.PullTimeout is zero.
const DefaultPullTimeout = 10 * time.Minute

// pullCall is one pull under way; the starts that need the same image
// (and login) wait for it instead of pulling again.
type pullCall struct {
	done chan struct{}
	err  error
}

// dockerRef answers the reference of a DockerImagePrefix image, checked
// to be in the normalized form lrp.Image and the API give.
func dockerRef(image string) (string, bool, error) {
	ref, ok := strings.CutPrefix(image, executor.DockerImagePrefix)
	if !ok {
		return "", false, nil
	}
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", true, executor.NewError(executor.ErrInvalidRequest, "image %q: %v", image, err)
	}
	if named.String() != ref {
		return "", true, executor.NewError(executor.ErrInvalidRequest, "image %q: want the normalized reference %s%s", image, executor.DockerImagePrefix, named.String())
	}
	return ref, true, nil
}

// PullImage makes image available: a DockerImagePrefix image that
// containerd's namespace does not hold yet is pulled from its registry
// (auth, when set, is the login for that pull only), its layers checked as
// an import's are, and unpacked into the agent's snapshotter. Concurrent
// calls for one image and login pull once. It answers the image config's
// environment for a docker image, nothing for other images (their
// existence is Validate's and Prepare's to check).
func (c *Client) PullImage(ctx context.Context, logger lager.Logger, image string, auth *executor.RegistryAuth) (containerstore.ImageConfig, error) {
	ref, ok, err := dockerRef(image)
	if !ok || err != nil {
		return containerstore.ImageConfig{}, err
	}
	ctx = c.nsCtx(ctx)
	img, err := c.client.GetImage(ctx, ref)
	switch {
	case errdefs.IsNotFound(err):
		if err := c.pullOnce(ctx, logger, ref, auth); err != nil {
			return containerstore.ImageConfig{}, err
		}
		if img, err = c.client.GetImage(ctx, ref); err != nil {
			return containerstore.ImageConfig{}, fmt.Errorf("image %s after its pull: %w", ref, err)
		}
	case err != nil:
		return containerstore.ImageConfig{}, fmt.Errorf("look up image %s: %w", ref, err)
	case img.Labels()[labelLogin] != "":
		// Pulled with a login: the cache must not give it to a start
		// that the registry would refuse. Ask the registry again.
		if err := c.authorize(ctx, ref, auth); err != nil {
			logger.Info("pull-refused", lager.Data{"image": ref, "error": err.Error()})
			return containerstore.ImageConfig{}, err
		}
		logger.Info("image-present", lager.Data{"image": ref, "login-checked": true})
	default:
		logger.Info("image-present", lager.Data{"image": ref})
	}
	if ok, _ := img.IsUnpacked(ctx, c.snapshotter); !ok {
		if err := img.Unpack(ctx, c.snapshotter); err != nil {
			return containerstore.ImageConfig{}, fmt.Errorf("unpack image %s: %w", ref, err)
		}
	}
	spec, err := img.Spec(ctx)
	if err != nil {
		return containerstore.ImageConfig{}, fmt.Errorf("image %s config: %w", ref, err)
	}
	return containerstore.ImageConfig{Env: slices.Clone(spec.Config.Env)}, nil
}

// pullOnce pulls ref, or waits for the pull of ref with the same login
// already under way (ctx ends only this caller's wait).
func (c *Client) pullOnce(ctx context.Context, logger lager.Logger, ref string, auth *executor.RegistryAuth) error {
	key := ref
	if auth != nil {
		// Pulls with different logins are different pulls (one may be
		// refused); the key holds a hash of the login, not the login.
		sum := sha256.Sum256([]byte(auth.Username + "\x00" + auth.Password))
		key += "\x00" + hex.EncodeToString(sum[:])
	}
	c.pullMu.Lock()
	call, ok := c.pulls[key]
	if !ok {
		call = &pullCall{done: make(chan struct{})}
		c.pulls[key] = call
		// The pull outlives a caller that gives up: the others may wait
		// for it. It is bounded by the pull timeout.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.pullTimeout)
		go func() {
			defer cancel()
			call.err = c.pull(pctx, logger, ref, auth)
			c.pullMu.Lock()
			delete(c.pulls, key)
			c.pullMu.Unlock()
			close(call.done)
		}()
	} else {
		logger.Info("pull-joined", lager.Data{"image": ref})
	}
	c.pullMu.Unlock()
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return fmt.Errorf("waiting for the pull of %s: %w", ref, ctx.Err())
	}
}

// authorize resolves ref at its registry with auth (nil: none), within
// a minute, and answers why the registry refuses it.
func (c *Client) authorize(ctx context.Context, ref string, auth *executor.RegistryAuth) error {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return executor.NewError(executor.ErrInvalidRequest, "image %s: %v", ref, err)
	}
	domain, scheme := reference.Domain(named), c.schemeOf(reference.Domain(named))
	ctx, cancel := context.WithTimeout(ctx, min(time.Minute, c.pullTimeout))
	defer cancel()
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: c.registryHosts(domain, scheme, auth)})
	if _, _, err := resolver.Resolve(ctx, ref); err != nil {
		return pullError(ref, scheme, err)
	}
	return nil
}

// schemeOf answers how a registry is reached: http when it is listed as
// insecure, else https.
func (c *Client) schemeOf(domain string) string {
	if slices.Contains(c.insecure, domain) {
		return "http"
	}
	return "https"
}

// pull fetches ref into the content store, checks its layers and unpacks
// it; an image that fails the check or the unpack is deleted again.
func (c *Client) pull(ctx context.Context, logger lager.Logger, ref string, auth *executor.RegistryAuth) error {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return executor.NewError(executor.ErrInvalidRequest, "image %s: %v", ref, err)
	}
	domain := reference.Domain(named)
	scheme := c.schemeOf(domain)
	data := lager.Data{"image": ref, "scheme": scheme, "login": auth != nil}
	logger.Info("pull-started", data)
	start := time.Now()
	var blobs, bytes atomic.Int64
	progress := images.HandlerFunc(func(_ context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		blobs.Add(1)
		bytes.Add(d.Size)
		logger.Info("pull-fetching", lager.Data{"image": ref, "digest": d.Digest.String(), "media-type": d.MediaType, "size": d.Size})
		return nil, nil
	})
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: c.registryHosts(domain, scheme, auth)})
	labels := map[string]string{labelOwner: c.cellID}
	if auth != nil {
		labels[labelLogin] = "required"
	}
	img, err := c.client.Pull(ctx, ref, containerd.WithResolver(resolver), containerd.WithImageHandler(progress),
		containerd.WithPullLabels(labels))
	if err != nil {
		logger.Info("pull-failed", lager.Data{"image": ref, "error": err.Error()})
		return pullError(ref, scheme, err)
	}
	cs := c.client.ContentStore()
	m, err := images.Manifest(ctx, cs, img.Target(), img.Platform())
	if err == nil {
		err = checkLayers(ctx, cs, m.Layers, importLimits)
	}
	if err == nil {
		err = img.Unpack(ctx, c.snapshotter)
	}
	if err != nil {
		// Nothing may run it: delete what was pulled (containerd's
		// collector frees the content).
		_ = c.client.ImageService().Delete(context.WithoutCancel(ctx), ref)
		logger.Info("pull-failed", lager.Data{"image": ref, "error": err.Error()})
		return fmt.Errorf("image %s pulled but not usable here: %w", ref, err)
	}
	logger.Info("pull-done", lager.Data{"image": ref, "digest": img.Target().Digest.String(), "blobs": blobs.Load(),
		"bytes": bytes.Load(), "seconds": time.Since(start).Seconds()})
	return nil
}

// registryHosts answers the registry hosts of one pull: scheme for every
// host (http for an insecure registry) and auth for the image's registry
// only (Docker Hub's is registry-1.docker.io).
func (c *Client) registryHosts(domain, scheme string, auth *executor.RegistryAuth) docker.RegistryHosts {
	tr := docker.DefaultHTTPTransport(nil)
	// A registry that accepts the connection and then says nothing must
	// not hold the start until the pull timeout.
	tr.ResponseHeaderTimeout = time.Minute
	client := &http.Client{Transport: tr}
	authOpts := []docker.AuthorizerOpt{docker.WithAuthClient(client)}
	if auth != nil {
		login := map[string]bool{domain: true}
		if domain == "docker.io" {
			login["registry-1.docker.io"] = true
		}
		authOpts = append(authOpts, docker.WithAuthCreds(func(host string) (string, string, error) {
			if !login[host] {
				return "", "", nil
			}
			return auth.Username, auth.Password, nil
		}))
	}
	return docker.ConfigureDefaultRegistries(docker.WithClient(client),
		docker.WithAuthorizer(docker.NewDockerAuthorizer(authOpts...)),
		docker.WithPlainHTTP(func(string) (bool, error) { return scheme == "http", nil }))
}

// pullError says why a pull failed in the words an operator needs.
func pullError(ref, scheme string, err error) error {
	switch {
	case errdefs.IsNotFound(err):
		return fmt.Errorf("image %s not found in its registry: %w", ref, err)
	case errors.Is(err, docker.ErrInvalidAuthorization), strings.Contains(err.Error(), "401 Unauthorized"), strings.Contains(err.Error(), "403 Forbidden"):
		return fmt.Errorf("registry refused the login for image %s: %w", ref, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("pull of image %s did not finish within the pull timeout: %w", ref, err)
	case scheme == "https" && strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("pull image %s: the registry speaks plain HTTP; list it in containerd.insecure_registries to allow that: %w", ref, err)
	}
	return fmt.Errorf("pull image %s: %w", ref, err)
}
