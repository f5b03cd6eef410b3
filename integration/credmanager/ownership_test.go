package credmanager_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/credmanager"
)

const (
	containerUID = 4321
	containerGID = 4322
	strangerUID  = 4323
)

// readAs reads path as uid:gid in a child process, the way the container's
// user (or another one) would.
func readAs(uid, gid int, path string) ([]byte, error) {
	cmd := exec.Command("/bin/cat", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	return cmd.CombinedOutput()
}

var _ = Describe("credential file ownership", func() {
	var (
		m       *credmanager.Manager
		dir     string
		mounted string // dir bind-mounted elsewhere, as runc mounts it into the container
	)

	BeforeEach(func() {
		// A data dir others may traverse: credentials/ itself must stop them.
		dataDir, err := os.MkdirTemp("", "credmanager-integration")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(os.RemoveAll, dataDir)
		Expect(os.Chmod(dataDir, 0o755)).To(Succeed())

		logger := lagertest.NewTestLogger("test")
		m, err = credmanager.New(logger, credmanager.Config{DataDir: dataDir})
		Expect(err).NotTo(HaveOccurred())
		_, err = m.Issue(logger, credmanager.Identity{GUID: "guid-1", UID: containerUID, GID: containerGID})
		Expect(err).NotTo(HaveOccurred())
		dir, err = m.HostDir("guid-1")
		Expect(err).NotTo(HaveOccurred())

		mounted, err = os.MkdirTemp("", "credmanager-mount")
		Expect(err).NotTo(HaveOccurred())
		Expect(os.Chmod(mounted, 0o755)).To(Succeed())
		Expect(syscall.Mount(dir, mounted, "", syscall.MS_BIND, "")).To(Succeed())
		DeferCleanup(func() {
			Expect(syscall.Unmount(mounted, syscall.MNT_DETACH)).To(Succeed())
			Expect(os.Remove(mounted)).To(Succeed())
		})
	})

	It("gives the key to the container's uid, mode 0600", func() {
		for _, name := range []string{credmanager.KeyFile, credmanager.BundleFile} {
			fi, err := os.Stat(filepath.Join(dir, name))
			Expect(err).NotTo(HaveOccurred())
			st := fi.Sys().(*syscall.Stat_t)
			Expect(st.Uid).To(BeEquivalentTo(containerUID), name)
			Expect(st.Gid).To(BeEquivalentTo(containerGID), name)
			Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o600)), name)
		}
	})

	It("lets the container's uid read key, certificate and bundle through the bind mount (files replaced by rename, the bundle a symlink into ..data)", func() {
		for _, name := range []string{credmanager.KeyFile, credmanager.CertFile, credmanager.BundleFile} {
			out, err := readAs(containerUID, containerGID, filepath.Join(mounted, name))
			Expect(err).NotTo(HaveOccurred(), string(out))
			Expect(string(out)).To(ContainSubstring("-----BEGIN"))
		}
	})

	It("keeps every host account, even one with the container's uid, out of credentials/ (issue 13 item 13)", func() {
		fi, err := os.Stat(filepath.Dir(dir))
		Expect(err).NotTo(HaveOccurred())
		Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o700)))
		for _, name := range []string{credmanager.KeyFile, credmanager.BundleFile, credmanager.CertFile} {
			out, err := readAs(containerUID, containerGID, filepath.Join(dir, name))
			Expect(err).To(HaveOccurred(), name)
			Expect(string(out)).To(ContainSubstring("Permission denied"), name)
		}
	})

	It("keeps the key from every other uid in the container, across a rotation too", func() {
		for range 2 {
			out, err := readAs(strangerUID, strangerUID, filepath.Join(mounted, credmanager.KeyFile))
			Expect(err).To(HaveOccurred())
			Expect(string(out)).To(ContainSubstring("Permission denied"))
			out, err = readAs(strangerUID, strangerUID, filepath.Join(mounted, credmanager.BundleFile))
			Expect(err).To(HaveOccurred())
			Expect(string(out)).To(ContainSubstring("Permission denied"))
			// The certificate is public.
			_, err = readAs(strangerUID, strangerUID, filepath.Join(mounted, credmanager.CertFile))
			Expect(err).NotTo(HaveOccurred())

			_, err = m.Issue(lagertest.NewTestLogger("test"), credmanager.Identity{GUID: "guid-1", UID: containerUID, GID: containerGID})
			Expect(err).NotTo(HaveOccurred())
		}
	})
})
