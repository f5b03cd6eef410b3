package adapters_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/downloads"
	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/internal/adapters"
)

// dirRootfs is a container filesystem in a directory, with vcap (2000,
// home /home/vcap) as its only user.
type dirRootfs struct{ dir string }

func (d dirRootfs) WriteRootfs(_ context.Context, _ string, fn func(*os.Root, containerstore.UserLookup) error) error {
	r, err := os.OpenRoot(d.dir)
	if err != nil {
		return err
	}
	defer r.Close()
	return fn(r, func(name string) (containerstore.RootfsUser, error) {
		if name != "vcap" {
			return containerstore.RootfsUser{}, os.ErrNotExist
		}
		return containerstore.RootfsUser{User: containerstore.User{UID: 2000, GID: 2000}, Home: "/home/vcap"}, nil
	})
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

func oneFileTgz(name, body string) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	Expect(tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg})).To(Succeed())
	_, _ = tw.Write([]byte(body))
	Expect(tw.Close()).To(Succeed())
	Expect(gz.Close()).To(Succeed())
	return buf.Bytes()
}

var _ = Describe("Downloads", func() {
	var (
		rootfs string
		hook   *adapters.Downloads
		log    *bytes.Buffer
		base   string
	)

	BeforeEach(func() {
		bodies := map[string][]byte{"/droplet.tgz": oneFileTgz("app/run", "droplet"), "/lifecycle.tgz": oneFileTgz("launcher", "lc"),
			"/big.tgz": oneFileTgz("big", strings.Repeat("0", 1<<20+1)), "/half.tgz": oneFileTgz("half", strings.Repeat("0", 600<<10))}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if b, ok := bodies[r.URL.Path]; ok {
				_, _ = w.Write(b)
				return
			}
			http.NotFound(w, r)
		}))
		DeferCleanup(srv.Close)
		base = srv.URL
		rootfs = GinkgoT().TempDir()
		Expect(os.MkdirAll(filepath.Join(rootfs, "home/vcap"), 0o755)).To(Succeed())
		cache, err := downloads.New(lagertest.NewTestLogger("t"), downloads.Config{Dir: GinkgoT().TempDir(), MaxBytes: 1 << 20, MaxArtifactBytes: 1 << 20})
		Expect(err).NotTo(HaveOccurred())
		log = &bytes.Buffer{}
		hook = &adapters.Downloads{Cache: cache, Rootfs: dirRootfs{rootfs}, Limits: downloads.Limits{MaxBytes: 1 << 20, MaxEntries: 100},
			Log: func(string) (io.WriteCloser, error) { return nopCloser{log}, nil }}
	})

	inst := func() *containerstore.Instance {
		return &containerstore.Instance{GUID: "g1", DiskMB: 1, Request: executor.RunRequest{Process: executor.Process{User: "vcap"},
			Setup:              &executor.SetupAction{Download: &executor.DownloadAction{Artifact: "droplet", From: base + "/droplet.tgz", To: "."}},
			CachedDependencies: []executor.CachedDependency{{Name: "lifecycle", From: base + "/lifecycle.tgz", To: "/tmp/lifecycle", CacheKey: "lc"}}}}
	}

	It("extracts the setup under the process user's home, owned by the user, and mounts the cached dependencies read-only", func() {
		in := inst()
		Expect(containerstore.Pipeline{Downloads: hook}.Setup(context.Background(), lagertest.NewTestLogger("t"), in)).To(Succeed())
		Expect(os.ReadFile(filepath.Join(rootfs, "home/vcap/app/run"))).To(Equal([]byte("droplet")))
		if os.Geteuid() == 0 {
			fi, err := os.Stat(filepath.Join(rootfs, "home/vcap/app/run"))
			Expect(err).NotTo(HaveOccurred())
			Expect(fi.Sys().(*syscall.Stat_t).Uid).To(BeEquivalentTo(2000))
		}
		Expect(in.Mounts).To(ConsistOf(And(HaveField("Destination", "/tmp/lifecycle"), HaveField("ReadOnly", true))))
		Expect(os.ReadFile(filepath.Join(in.Mounts[0].Source, "launcher"))).To(Equal([]byte("lc")))
		Expect(log.String()).To(ContainSubstring("Downloading droplet...\nDownloaded droplet ("))
		Expect(log.String()).To(ContainSubstring("Downloaded lifecycle ("))
	})

	It("fails the step, mounting nothing, when a download fails, and names it", func() {
		in := inst()
		in.Request.Setup.Download.From = base + "/missing.tgz"
		err := containerstore.Pipeline{Downloads: hook}.Setup(context.Background(), lagertest.NewTestLogger("t"), in)
		Expect(err).To(MatchError(ContainSubstring("downloading droplet failed: GET " + base + "/missing.tgz: status 404")))
		Expect(in.Mounts).To(BeEmpty())
	})

	It("refuses a setup that extracts to more than the container's disk_mb", func() {
		hook.Limits.MaxBytes = 1 << 30
		in := inst()
		in.Request.Setup.Download.From = base + "/big.tgz"
		err := containerstore.Pipeline{Downloads: hook}.Setup(context.Background(), lagertest.NewTestLogger("t"), in)
		Expect(err).To(MatchError(ContainSubstring("extract to more than 1048576 bytes")))
		in.DiskMB = 2
		Expect(containerstore.Pipeline{Downloads: hook}.Setup(context.Background(), lagertest.NewTestLogger("t"), in)).To(Succeed())
	})

	It("bounds parallel setup downloads by one shared disk_mb", func() {
		hook.Limits.MaxBytes = 1 << 30
		in := inst()
		half := func(to string) executor.SetupAction {
			return executor.SetupAction{Download: &executor.DownloadAction{From: base + "/half.tgz", To: to}}
		}
		in.Request.Setup = &executor.SetupAction{Parallel: []executor.SetupAction{half("a"), half("b")}}
		err := containerstore.Pipeline{Downloads: hook}.Setup(context.Background(), lagertest.NewTestLogger("t"), in)
		Expect(err).To(MatchError(ContainSubstring("the downloads extract to more than 1048576 bytes")))
		in.DiskMB = 2
		Expect(containerstore.Pipeline{Downloads: hook}.Setup(context.Background(), lagertest.NewTestLogger("t"), in)).To(Succeed())
	})
})
