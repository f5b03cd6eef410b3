package containerstore_test

import (
	"os"
	"path/filepath"
	"syscall"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("BindMountHook", func() {
	var (
		allowed, outside string
		hook             *containerstore.BindMountHook
	)
	BeforeEach(func() {
		allowed, outside = GinkgoT().TempDir(), GinkgoT().TempDir()
		Expect(os.Mkdir(filepath.Join(allowed, "sub"), 0o755)).To(Succeed())
		Expect(os.Symlink(outside, filepath.Join(allowed, "link-out"))).To(Succeed())
		hook = &containerstore.BindMountHook{Allowlist: []string{allowed}}
	})
	validate := func(m executor.BindMount) error {
		return hook.ValidateRequest(&executor.RunRequest{BindMounts: []executor.BindMount{m}})
	}

	DescribeTable("refuses with InvalidRequest",
		func(host func() string, target string) {
			Expect(validate(executor.BindMount{HostPath: host(), ContainerPath: target})).To(MatchError(executor.ErrInvalidRequest))
		},
		Entry("a path outside the allowlist", func() string { return outside }, "/data"),
		Entry("a symlink inside that leads outside", func() string { return filepath.Join(allowed, "link-out") }, "/data"),
		Entry("dot-dot out of the allowlist", func() string { return allowed + "/../" + filepath.Base(outside) }, "/data"),
		Entry("a sibling whose name starts like the allowed dir", func() string {
			sib := allowed + "-evil"
			Expect(os.Mkdir(sib, 0o755)).To(Succeed())
			DeferCleanup(os.RemoveAll, sib)
			return sib
		}, "/data"),
		Entry("a relative host path", func() string { return "sub" }, "/data"),
		Entry("a missing host path", func() string { return filepath.Join(allowed, "nope") }, "/data"),
		Entry("the credentials mount", func() string { return allowed }, "/etc/cf-instance-credentials"),
		Entry("under /proc", func() string { return allowed }, "/proc/self"),
		Entry("the root", func() string { return allowed }, "/"),
		Entry("a relative target", func() string { return allowed }, "data"),
	)

	It("accepts paths under the allowlist and mounts the resolved path", func() {
		Expect(validate(executor.BindMount{HostPath: filepath.Join(allowed, "sub"), ContainerPath: "/data/"})).To(Succeed())
		inst := containerstore.Instance{Request: executor.RunRequest{BindMounts: []executor.BindMount{
			{HostPath: allowed + "/sub/.", ContainerPath: "/data/", ReadOnly: true}}}}
		res, err := hook.Setup(nil, nil, inst)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Mounts).To(HaveLen(1))
		m := res.Mounts[0]
		Expect(m.Source).To(Equal(filepath.Join(allowed, "sub")))
		Expect(m.Destination).To(Equal("/data"))
		Expect(m.ReadOnly).To(BeTrue())
		By("with the identity of the directory that was checked (issue 13 item 4)")
		fi, err := os.Stat(filepath.Join(allowed, "sub"))
		Expect(err).NotTo(HaveOccurred())
		st := fi.Sys().(*syscall.Stat_t)
		Expect(m.Dev).To(BeEquivalentTo(st.Dev))
		Expect(m.Ino).To(BeEquivalentTo(st.Ino))
	})

	It("refuses everything with an empty allowlist", func() {
		hook.Allowlist = nil
		Expect(validate(executor.BindMount{HostPath: allowed, ContainerPath: "/data"})).To(MatchError(executor.ErrInvalidRequest))
	})
})
