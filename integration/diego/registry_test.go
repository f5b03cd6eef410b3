package diego_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"

	"github.com/cellagent/cellagent/integration/testagent"
)

// registryBinary is Debian's docker-registry (distribution's registry).
const registryBinary = "/usr/bin/docker-registry"

// registry is a docker-registry serving on a loopback port, with its
// config and storage in a temporary directory.
type registry struct {
	Host string // 127.0.0.1:PORT
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
}

// ensureRegistryInstalled installs the package the way the scripts do
// (scripts/lib.sh install_packages) when the binary is missing.
func ensureRegistryInstalled() error {
	if _, err := os.Stat(registryBinary); err == nil {
		return nil
	}
	_, file, _, _ := goruntime.Caller(0)
	lib := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "lib.sh")
	out, err := exec.Command("bash", "-c", `source "$1" && install_packages`, "bash", lib).CombinedOutput()
	if err != nil {
		return fmt.Errorf("install_packages: %v\n%s", err, out)
	}
	if _, err := os.Stat(registryBinary); err != nil {
		return fmt.Errorf("install_packages left no %s: %w", registryBinary, err)
	}
	return nil
}

// startRegistry runs docker-registry on a free loopback port with storage
// under dir and waits (at most 30s) until it answers /v2/. With login set
// ("user:password") it requires that basic-auth login (htpasswd).
func startRegistry(dir, login string) (*registry, error) {
	if err := ensureRegistryInstalled(); err != nil {
		return nil, err
	}
	port, err := testagent.FreePort()
	if err != nil {
		return nil, err
	}
	host := "127.0.0.1:" + strconv.Itoa(port)
	conf := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "storage"), host)
	if login != "" {
		user, pass, _ := strings.Cut(login, ":")
		hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
		if err != nil {
			return nil, err
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
			return nil, err
		}
		conf += fmt.Sprintf("auth:\n  htpasswd:\n    realm: cellagent-it\n    path: %s\n", htpasswd)
	}
	confPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	r := &registry{Host: host, done: make(chan struct{}), log: &bytes.Buffer{}}
	r.cmd = exec.Command(registryBinary, "serve", confPath)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	client := http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-r.done:
			return nil, fmt.Errorf("docker-registry exited: %s", r.log.String())
		default:
		}
		if resp, err := client.Get("http://" + host + "/v2/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || (login != "" && resp.StatusCode == http.StatusUnauthorized) {
				return r, nil
			}
		}
	}
	r.stop()
	return nil, fmt.Errorf("docker-registry did not answer on %s within 30s: %s", host, r.log.String())
}

// stop ends the registry (its process only) and waits for it.
func (r *registry) stop() {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// blob is one piece of an image with its descriptor.
type blob struct {
	desc ocispec.Descriptor
	data []byte
}

func newBlob(mediaType string, data []byte) blob {
	return blob{desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, data: data}
}

// layerOf tars and gzips the directory dir (owners, modes, symlinks), and
// answers the layer and its diff id (the digest of the plain tar).
func layerOf(dir string) (blob, digest.Digest, error) {
	var plain bytes.Buffer
	tw := tar.NewWriter(&plain)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name, hdr.Uname, hdr.Gname = rel, "", ""
		if d.IsDir() {
			hdr.Name += "/"
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return blob{}, "", err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(plain.Bytes()); err != nil {
		return blob{}, "", err
	}
	if err := zw.Close(); err != nil {
		return blob{}, "", err
	}
	return newBlob(ocispec.MediaTypeImageLayerGzip, gz.Bytes()), digest.FromBytes(plain.Bytes()), nil
}

// pushImage builds a one-layer OCI image of rootfs with config cfg and
// pushes it to the registry as ref (HOST/REPO:TAG) with containerd's
// pusher over plain HTTP, logging in with login ("user:password") if set.
func pushImage(ctx context.Context, ref, login, rootfs string, cfg ocispec.ImageConfig) error {
	layer, diffID, err := layerOf(rootfs)
	if err != nil {
		return fmt.Errorf("layer of %s: %w", rootfs, err)
	}
	config, err := json.Marshal(ocispec.Image{Platform: ocispec.Platform{Architecture: goruntime.GOARCH, OS: "linux"},
		Config: cfg, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}}})
	if err != nil {
		return err
	}
	cb := newBlob(ocispec.MediaTypeImageConfig, config)
	manifest, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest, Config: cb.desc, Layers: []ocispec.Descriptor{layer.desc}})
	if err != nil {
		return err
	}
	user, pass, _ := strings.Cut(login, ":")
	authorizer := docker.NewDockerAuthorizer(docker.WithAuthCreds(func(string) (string, string, error) { return user, pass, nil }))
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(
		docker.WithPlainHTTP(docker.MatchAllHosts), docker.WithAuthorizer(authorizer))})
	pusher, err := resolver.Pusher(ctx, ref)
	if err != nil {
		return err
	}
	// Blobs first, the manifest (which names them) last.
	for _, b := range []blob{layer, cb, newBlob(ocispec.MediaTypeImageManifest, manifest)} {
		w, err := pusher.Push(ctx, b.desc)
		if errdefs.IsAlreadyExists(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("push %s: %w", b.desc.MediaType, err)
		}
		if _, err := w.Write(b.data); err != nil {
			w.Close()
			return err
		}
		if err := w.Commit(ctx, b.desc.Size, b.desc.Digest); err != nil && !errdefs.IsAlreadyExists(err) {
			w.Close()
			return fmt.Errorf("commit %s: %w", b.desc.MediaType, err)
		}
		w.Close()
	}
	return nil
}
