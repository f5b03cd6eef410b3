package core_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

// ociArchive packs rootfs as a one-layer OCI image layout tar, the format
// `ctr images export`, buildah and skopeo write.
func ociArchive(rootfs string) []byte {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	err := filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == rootfs {
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
		if !info.Mode().IsRegular() && !info.IsDir() && info.Mode()&fs.ModeSymlink == 0 {
			return nil // devices and sockets: not needed to run the app
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(rootfs, p)
		hdr.Name = rel
		if info.IsDir() {
			hdr.Name += "/"
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
	Expect(err).NotTo(HaveOccurred())
	Expect(tw.Close()).To(Succeed())

	blobs := map[string][]byte{}
	add := func(b []byte) (string, int) {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return d, len(b)
	}
	layerDigest, layerSize := add(layer.Bytes())
	cfg, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/app/server"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	cfgDigest, cfgSize := add(cfg)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfgDigest, "size": cfgSize},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": layerSize}},
	})
	manDigest, manSize := add(manifest)
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manDigest, "size": manSize,
			"platform": map[string]string{"architecture": runtime.GOARCH, "os": "linux"}}},
	})

	var out bytes.Buffer
	aw := tar.NewWriter(&out)
	put := func(name string, b []byte) {
		Expect(aw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)})).To(Succeed())
		_, err := aw.Write(b)
		Expect(err).NotTo(HaveOccurred())
	}
	put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	put("index.json", index)
	for d, b := range blobs {
		put("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), b)
	}
	Expect(aw.Close()).To(Succeed())
	return out.Bytes()
}

var _ = Describe("image archives", func() {
	It("imports an OCI archive through the API, runs a container from it, and refuses garbage", func() {
		agent, err := testagent.New(GinkgoT().TempDir(), fmt.Sprintf("img%d", time.Now().UnixNano()%100000), nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(agent.Start()).To(Succeed())
		DeferCleanup(agent.Cleanup)
		ctx := context.Background()

		By("an archive that names nothing needs a name")
		archive := ociArchive(agent.Config.PreloadedRootfs["busybox"])
		_, err = agent.Client.ImportImage(ctx, bytes.NewReader(archive), "")
		Expect(err).To(MatchError(executor.ErrInvalidRequest))
		Expect(err).To(MatchError(ContainSubstring("names no image")))

		By("with a name it is imported and unpacked")
		imgs, err := agent.Client.ImportImage(ctx, bytes.NewReader(archive), "cellagent.test/demo:1")
		Expect(err).NotTo(HaveOccurred())
		Expect(imgs).To(ConsistOf(HaveField("Name", "cellagent.test/demo:1")))
		Expect(imgs[0].Digest).To(HavePrefix("sha256:"))

		By("a container runs from it")
		port, _ := testagent.FreePort()
		req := appRequest(port)
		req.Image = "cellagent.test/demo:1"
		_, err = agent.Client.AllocateAndRun(ctx, "img-1", req)
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("img-1", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(get("http://127.0.0.1:" + strconv.Itoa(port) + "/")).To(ContainSubstring("img-1"))
		Expect(agent.Client.Delete(ctx, "img-1")).To(Succeed())

		By("garbage and a bad name are refused, and what was imported stays usable")
		_, err = agent.Client.ImportImage(ctx, strings.NewReader("not a tar at all"), "cellagent.test/garbage:1")
		Expect(err).To(MatchError(executor.ErrInvalidRequest))
		_, err = agent.Client.ImportImage(ctx, bytes.NewReader(archive), "Bad/Name")
		Expect(err).To(MatchError(executor.ErrInvalidRequest))
		_, err = agent.Client.AllocateAndRun(ctx, "img-2", req)
		Expect(err).NotTo(HaveOccurred())
		_, err = agent.WaitState("img-2", executor.StateRunning, 30*time.Second)
		Expect(err).NotTo(HaveOccurred())
	})
})
