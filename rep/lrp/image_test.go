package lrp_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/rep/lrp"
	"github.com/cellagent/cellagent/rep/models"
)

const digest = "sha256:4b7ce07a9f2d0a5b1b6f43cd3c2f2d8b3e8d6f1bd1b0b3a1c0f9e3e2d1c0b9a8"

var _ = Describe("Image", func() {
	DescribeTable("maps a docker rootfs URL to a normalized reference, as garden reads it",
		func(rootfs, want string) {
			got, err := lrp.Image(rootfs, settings.Stacks)
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal(executor.DockerImagePrefix + want))
		},
		Entry("an official image, no tag", "docker:///busybox", "docker.io/library/busybox:latest"),
		Entry("a Hub user's image with a tag", "docker:///cloudfoundry/diego-docker-app:1.2", "docker.io/cloudfoundry/diego-docker-app:1.2"),
		Entry("the Cloud Controller's fragment tag", "docker:///cloudfoundry/diego-docker-app#latest", "docker.io/cloudfoundry/diego-docker-app:latest"),
		Entry("a registry with a port", "docker://127.0.0.1:5000/cellagent/app:v1", "127.0.0.1:5000/cellagent/app:v1"),
		Entry("a registry with a port, fragment tag", "docker://127.0.0.1:5000/app#v1", "127.0.0.1:5000/app:v1"),
		Entry("a registry host name", "docker://registry.example.com/team/app", "registry.example.com/team/app:latest"),
		Entry("localhost", "docker://localhost/app:2", "localhost/app:2"),
		Entry("Docker Hub's legacy host", "docker://index.docker.io/library/busybox", "docker.io/library/busybox:latest"),
		Entry("a digest in the path", "docker:///busybox@"+digest, "docker.io/library/busybox@"+digest),
		Entry("a digest as the fragment", "docker://127.0.0.1:5000/app#"+digest, "127.0.0.1:5000/app@"+digest),
		Entry("a tag and a digest: the digest", "docker:///busybox:1.36@"+digest, "docker.io/library/busybox@"+digest),
	)

	It("still maps preloaded:STACK through the stacks", func() {
		Expect(lrp.Image("preloaded:cflinuxfs4", settings.Stacks)).To(Equal("preloaded:busybox"))
	})

	DescribeTable("refuses a rootfs it cannot map, saying why",
		func(rootfs, reason string) {
			_, err := lrp.Image(rootfs, settings.Stacks)
			Expect(err).To(BeAssignableToTypeOf(&lrp.Refusal{}))
			Expect(err.Error()).To(ContainSubstring(reason))
		},
		Entry("another scheme", "oci:///busybox", "only preloaded:STACK and docker://"),
		Entry("no repository", "docker:///", "no repository"),
		Entry("an opaque docker URL", "docker:busybox", "want docker:///REPO"),
		Entry("credentials in the URL", "docker://user:pw@registry.example.com/app", "credentials in the URL"),
		Entry("a query", "docker:///busybox?tag=1", "query"),
		Entry("a registry that reads as a Hub namespace", "docker://myregistry/app", `registry "myregistry"`),
		Entry("upper case", "docker:///BusyBox", "must be lowercase"),
		Entry("a tag twice", "docker:///busybox:1#2", "both in the path and in the fragment"),
		Entry("a bad digest", "docker:///busybox@sha256:abc", "invalid"),
		Entry("an unknown stack", "preloaded:cflinuxfs3", `stack "cflinuxfs3"`),
	)
})

// withStringField appends string field num to m's encoding (as a field our
// wire types do not declare) and decodes it again.
func withStringField(m proto.Message, num protowire.Number, v string) {
	b, err := proto.Marshal(m)
	Expect(err).NotTo(HaveOccurred())
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendString(b, v)
	proto.Reset(m)
	Expect(proto.Unmarshal(b, m)).To(Succeed())
}

var _ = Describe("Translate with a docker rootfs", func() {
	dockerLRP := func() *models.DesiredLRP {
		d := desired()
		d.RootFs = "docker://127.0.0.1:5000/app#v1"
		return d
	}

	It("runs the image as the run action's user with the desired env", func() {
		req, err := lrp.Translate(dockerLRP(), 0, settings)
		Expect(err).NotTo(HaveOccurred())
		Expect(req.Image).To(Equal("docker://127.0.0.1:5000/app:v1"))
		Expect(req.Process.User).To(Equal("vcap"))
		Expect(req.Process.Env).To(Equal([]string{"PORT=8080", "RUN_ONLY=1"}))
		Expect(req.ImageAuth).To(BeNil())
		Expect(req.Validate(true)).To(Succeed())
	})

	It("takes image_username and image_password as the pull's login", func() {
		d := dockerLRP()
		withStringField(d, 31, "puller")
		withStringField(d, 32, "s3cret")
		req, err := lrp.Translate(d, 0, settings)
		Expect(err).NotTo(HaveOccurred())
		Expect(req.ImageAuth).To(Equal(&executor.RegistryAuth{Username: "puller", Password: "s3cret"}))
		Expect(req.ImageAuth.String()).NotTo(ContainSubstring("s3cret"))
	})

	It("takes a task's image_username and image_password (fields 23, 24)", func() {
		t := &models.TaskDefinition{RootFs: "docker:///busybox", MemoryMb: 64, DiskMb: 32,
			Action: &models.Action{RunAction: &models.RunAction{Path: "/bin/true", User: "nobody"}}}
		withStringField(t, 23, "puller")
		withStringField(t, 24, "s3cret")
		req, err := lrp.TranslateTask(t, settings)
		Expect(err).NotTo(HaveOccurred())
		Expect(req.ImageAuth).To(Equal(&executor.RegistryAuth{Username: "puller", Password: "s3cret"}))
	})

	It("runs an image without a run action user as root where privileged instances are allowed", func() {
		d := dockerLRP()
		d.Privileged = true
		d.Action = &models.Action{RunAction: &models.RunAction{Path: "/bin/app"}}
		req, err := lrp.Translate(d, 0, lrp.Settings{AllowPrivileged: true})
		Expect(err).NotTo(HaveOccurred())
		Expect(req.Process.User).To(Equal("root"))
		Expect(req.Privileged).To(BeTrue())
	})

	DescribeTable("refuses",
		func(change func(*models.DesiredLRP), reason string) {
			d := dockerLRP()
			change(d)
			_, err := lrp.Translate(d, 0, settings)
			Expect(err).To(BeAssignableToTypeOf(&lrp.Refusal{}))
			Expect(err.Error()).To(ContainSubstring(reason))
		},
		Entry("root as the run action user", func(d *models.DesiredLRP) { d.Action = run("/bin/app"); d.Action.RunAction.User = "root" },
			`run action user "root"`),
		Entry("uid 0", func(d *models.DesiredLRP) { d.Action = run("/bin/app"); d.Action.RunAction.User = "0" }, `run action user "0"`),
		Entry("a login without its password", func(d *models.DesiredLRP) { withStringField(d, 31, "puller") }, "must be given together"),
		Entry("a login for a preloaded rootfs", func(d *models.DesiredLRP) {
			d.RootFs = "preloaded:cflinuxfs4"
			withStringField(d, 31, "puller")
			withStringField(d, 32, "pw")
		}, "docker images only"),
	)
})
