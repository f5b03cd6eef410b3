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

// MaxPullBytes bounds the blobs one pull fetches (manifests, config and
// layers as the registry states their sizes), as httpapi.MaxImageBytes
// bounds an imported archive.
const MaxPullBytes = 4 << 30

// maxPullRounds bounds how often a start waits for a pull of its image
// made with another login before it gives up.
const maxPullRounds = 3

// pullCall is one pull under way; the starts that need the same image
// wait for it instead of pulling again (with the same login, its result is
// theirs; with another, they look at the image again after it).
type pullCall struct {
	login string // hash of the login, "" for none
	done  chan struct{}
	err   error
}

// The labels of an image record the pull path made: labelPulled comes
// with the record (containerd's Pull writes it before the layers are
// checked), labelChecked only after the check and the unpack succeeded, as
// the digest of the record's target then. A pulled record without a
// matching labelChecked (a pull under way, or one killed between its
// fetch and its check) is not used: it is pulled again. Images without
// labelPulled (imported through /v1/images, checked there; preloaded
// rootfs snapshots) are used as they are.
const (
	labelPulled  = "cellagent.pulled"
	labelChecked = "cellagent.checked"
)

// usable says whether img may be used: not made by a pull, or checked by
// the pull that made it.
func usable(img images.Image) bool {
	return img.Labels[labelPulled] == "" || img.Labels[labelChecked] == img.Target.Digest.String()
}

// loginKey answers a hash of auth ("" for none): pulls with different
// logins are different pulls (one may be refused).
func loginKey(auth *executor.RegistryAuth) string {
	if auth == nil {
		return ""
	}
	sum := sha256.Sum256([]byte(auth.Username + "\x00" + auth.Password))
	return hex.EncodeToString(sum[:])
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
// containerd's namespace does not hold yet, or holds only as a pull that
// was not checked, is pulled from its registry (auth, when set, is the
// login for that pull only), its layers checked as an import's are, and
// unpacked into the agent's snapshotter. Concurrent calls for one image
// pull once: a call waits for the pull of its image under way before it
// looks at the image. It answers the image config's environment for a
// docker image, nothing for other images (their existence is Validate's
// and Prepare's to check).
func (c *Client) PullImage(ctx context.Context, logger lager.Logger, image string, auth *executor.RegistryAuth) (containerstore.ImageConfig, error) {
	ref, ok, err := dockerRef(image)
	if !ok || err != nil {
		return containerstore.ImageConfig{}, err
	}
	ctx = c.nsCtx(ctx)
	login := loginKey(auth)
	call, started := c.pullOf(ref), false
	for round := 1; ; round++ {
		// ownLogin: the pull this start waited for used its login and
		// succeeded; the registry has just accepted that login.
		ownLogin := false
		if call != nil {
			if !started {
				logger.Info("pull-joined", lager.Data{"image": ref, "same-login": call.login == login})
			}
			select {
			case <-call.done:
			case <-ctx.Done():
				return containerstore.ImageConfig{}, fmt.Errorf("waiting for the pull of %s: %w", ref, ctx.Err())
			}
			if call.login == login {
				if call.err != nil {
					return containerstore.ImageConfig{}, call.err
				}
				ownLogin = true
			} // else another login's pull: what it left says nothing of this login
		}
		rec, err := c.client.ImageService().Get(ctx, ref)
		switch {
		case err == nil && usable(rec):
			return c.usePulled(ctx, logger, containerd.NewImage(c.client, rec), auth, ownLogin)
		case err == nil && ownLogin:
			return containerstore.ImageConfig{}, fmt.Errorf("image %s: its pull succeeded but the record is not marked checked", ref)
		case err != nil && !errdefs.IsNotFound(err):
			return containerstore.ImageConfig{}, fmt.Errorf("look up image %s: %w", ref, err)
		case round == maxPullRounds:
			return containerstore.ImageConfig{}, fmt.Errorf("image %s: pulls of it with other logins went on for %d rounds; try again", ref, maxPullRounds)
		default:
			// Missing, or pulled and never checked: pull it (or join the
			// pull another start began meanwhile).
			call, started = c.startPull(ctx, logger, ref, auth, login)
		}
	}
}

// usePulled answers the config of an image usable here, after the
// registry accepted auth when the image was pulled with a login (unless
// authorized: the pull this start waited for used auth), unpacking it when
// its snapshot is gone.
func (c *Client) usePulled(ctx context.Context, logger lager.Logger, img containerd.Image, auth *executor.RegistryAuth, authorized bool) (containerstore.ImageConfig, error) {
	ref := img.Name()
	switch {
	case authorized:
		// The pull logged it (pull-done) and the joiners pull-joined.
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

// pullOf answers the pull of ref under way, or nil.
func (c *Client) pullOf(ref string) *pullCall {
	c.pullMu.Lock()
	defer c.pullMu.Unlock()
	return c.pulls[ref]
}

// startPull starts pulling ref with auth, unless a pull of ref is under
// way (with whatever login): it answers that one then, not started. One pull of a ref
// at a time, so a pull that fails deletes only the record it made. The
// pull outlives a caller that gives up (the others may wait for it); it is
// bounded by the pull timeout.
func (c *Client) startPull(ctx context.Context, logger lager.Logger, ref string, auth *executor.RegistryAuth, login string) (call *pullCall, started bool) {
	c.pullMu.Lock()
	defer c.pullMu.Unlock()
	if call, ok := c.pulls[ref]; ok {
		return call, false
	}
	call = &pullCall{login: login, done: make(chan struct{})}
	c.pulls[ref] = call
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.pullTimeout)
	go func() {
		defer cancel()
		call.err = c.pull(pctx, logger, ref, auth)
		c.pullMu.Lock()
		delete(c.pulls, ref)
		c.pullMu.Unlock()
		close(call.done)
	}()
	return call, true
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
	budget := &pullBudget{max: MaxPullBytes}
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: c.registryHosts(domain, scheme, auth)})
	// labelPulled comes with the record; labelChecked only after the
	// check and the unpack (see usable).
	labels := map[string]string{labelOwner: c.cellID, labelPulled: "true"}
	if auth != nil {
		labels[labelLogin] = "required"
	}
	img, err := c.client.Pull(ctx, ref, containerd.WithResolver(resolver), containerd.WithImageHandler(progress),
		containerd.WithImageHandlerWrapper(budget.wrap), containerd.WithPullLabels(labels))
	if err != nil {
		logger.Info("pull-failed", lager.Data{"image": ref, "error": err.Error()})
		c.dropUnchecked(ctx, ref)
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
	if err == nil {
		_, err = c.client.ImageService().Update(ctx, images.Image{Name: ref,
			Labels: map[string]string{labelChecked: img.Target().Digest.String()}}, "labels."+labelChecked)
	}
	if err != nil {
		// Nothing may run it: delete what was pulled (containerd's
		// collector frees the content).
		c.dropUnchecked(ctx, ref)
		logger.Info("pull-failed", lager.Data{"image": ref, "error": err.Error()})
		return fmt.Errorf("image %s pulled but not usable here: %w", ref, err)
	}
	logger.Info("pull-done", lager.Data{"image": ref, "digest": img.Target().Digest.String(), "blobs": blobs.Load(),
		"bytes": bytes.Load(), "seconds": time.Since(start).Seconds()})
	return nil
}

// dropUnchecked deletes the record of ref when a pull made it and it is
// not checked: what a failed pull leaves. Pulls of one ref run one at a
// time (startPull), so it is this pull's record, never one another pull
// completed; an imported or checked image is left alone.
func (c *Client) dropUnchecked(ctx context.Context, ref string) {
	ctx = context.WithoutCancel(ctx)
	rec, err := c.client.ImageService().Get(ctx, ref)
	if err != nil || usable(rec) {
		return
	}
	_ = c.client.ImageService().Delete(ctx, ref)
}

// pullBudget refuses a pull whose blobs, as the registry states their
// sizes, pass max: one blob before it is fetched, and all of them as soon
// as the manifests that list them are read, before their blobs are.
type pullBudget struct {
	max  int64
	used atomic.Int64
}

// wrap is the pull's handler wrapper: h fetches a descriptor and answers
// its children (a manifest's config and layers, an index's manifests for
// this platform), which are fetched next.
func (b *pullBudget) wrap(h images.Handler) images.Handler {
	return images.HandlerFunc(func(ctx context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if d.Size > b.max || d.Size < 0 {
			return nil, executor.NewError(executor.ErrInvalidRequest, "blob %s is %d bytes: a pull fetches at most %d", d.Digest, d.Size, b.max)
		}
		children, err := h.Handle(ctx, d)
		if err != nil {
			return nil, err
		}
		var sum int64
		for _, ch := range children {
			if ch.Size > b.max || ch.Size < 0 {
				return nil, executor.NewError(executor.ErrInvalidRequest, "blob %s is %d bytes: a pull fetches at most %d", ch.Digest, ch.Size, b.max)
			}
			sum += ch.Size
		}
		if used := b.used.Add(sum); used > b.max {
			return nil, executor.NewError(executor.ErrInvalidRequest, "the image's blobs are %d bytes or more: a pull fetches at most %d", used, b.max)
		}
		return children, nil
	})
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
