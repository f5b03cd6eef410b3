package diego_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

// dockerLRP is the demo app from a docker image: the run action names the
// command and a non-root user, as the Cloud Controller writes it for an
// image with a USER.
func dockerLRP(guid, rootfs string, instances int) string {
	return dockerLRPWithLogin(guid, rootfs, instances, "", "")
}

// dockerLRPWithLogin is dockerLRP with image_username and image_password.
func dockerLRPWithLogin(guid, rootfs string, instances int, user, password string) string {
	return fmt.Sprintf(`{"process_guid": %q, "domain": "cellagent-it", "rootfs": %q, "instances": %d,
 "image_username": %q, "image_password": %q,
 "memory_mb": 64, "disk_mb": 64, "ports": [%d], "env": [{"name": "PORT", "value": "%d"}],
 "action": {"run": {"path": "/app/server", "user": "vcap"}},
 "check_definition": {"checks": [{"tcp_check": {"port": %d}}]},
 "start_timeout_ms": 60000, "log_guid": %q, "metric_tags": {"source_id": {"static": %q}}}`,
		guid, rootfs, instances, user, password, appPort, appPort, appPort, guid, guid)
}

var _ = Describe("cellagent as a Diego cell running docker images from a registry", Ordered, func() {
	var (
		k     *kit
		agent *testagent.Agent
		reg   *registry
		repo  string // HOST:PORT/cellagent/demo
		// private is a registry that requires the login puller:password.
		private     *registry
		privateRepo string
	)
	const password = "s3cret-it-pw"

	BeforeAll(func() {
		var err error
		reg, err = startRegistry(GinkgoT().TempDir(), "")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { reg.stop() })
		private, err = startRegistry(GinkgoT().TempDir(), "puller:"+password)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { private.stop() })
		k, agent = startCell("diegodocker", cellOptions{insecureRegistries: []string{reg.Host, private.Host}}, cellNetwork{name: "cellagentdock",
			bridge: "cadock0", subnet: "10.254.175.0/24", ports: "47600-47699"})
		repo = reg.Host + "/cellagent/demo"
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// The image's env: PORT is the desired LRP's to set (it wins), the
		// greeting only the image has.
		imageCfg := ocispec.ImageConfig{User: "vcap", Env: []string{"PATH=/bin", "PORT=9999", "IMAGE_GREETING=from-the-image"}}
		Expect(pushImage(ctx, repo+":v1", "", agent.Dir+"/rootfs", imageCfg)).To(Succeed())
		privateRepo = private.Host + "/cellagent/private"
		Expect(pushImage(ctx, privateRepo+":v1", "puller:"+password, agent.Dir+"/rootfs", imageCfg)).To(Succeed())
		DeferCleanup(func() {
			// The pulled images stay in the agent's namespace as a cache;
			// the next run's registries have other ports, so other names.
			_ = exec.Command("ctr", "--address", agent.Config.Containerd.Socket, "-n", agent.Config.Containerd.Namespace,
				"images", "rm", repo+":v1", privateRepo+":v1").Run()
		})
	})

	It("advertises the docker rootfs provider beside its stacks", func() {
		Eventually(k.cells, 30*time.Second, 500*time.Millisecond).Should(HaveLen(1))
		cells, err := k.cells()
		Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, p := range cells[0].RootFSProviders {
			names = append(names, p.Name)
		}
		Expect(names).To(ConsistOf("preloaded", "docker"))
	})

	It("pulls the image once for two instances, runs them with the image's env under the desired env, and removes them", func() {
		const guid = "it-docker-1"
		_, err := k.bbsctl(dockerLRP(guid, "docker://"+repo+":v1", 2), "desire-lrp")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _, _ = k.bbsctl("", "remove-lrp", guid) })
		lrps, err := k.waitActual(guid, "RUNNING", 2, waitLong)
		Expect(err).NotTo(HaveOccurred())
		for _, l := range lrps {
			Expect(l.CellID).To(Equal("diegodocker"))
			env, err := get(appURL(l) + "/env")
			Expect(err).NotTo(HaveOccurred())
			lines := strings.Split(env, "\n")
			Expect(lines).To(ContainElement("IMAGE_GREETING=from-the-image"))
			Expect(lines).To(ContainElement(fmt.Sprintf("PORT=%d", appPort)))
			Expect(lines).NotTo(ContainElement("PORT=9999"))
			Expect(lines).To(ContainElement("CF_INSTANCE_GUID=" + l.InstanceGUID))
		}
		log := agent.LogText()
		Expect(strings.Count(log, `.pull-started"`)).To(Equal(1), "one pull for both instances")
		Expect(strings.Count(log, `.pull-started"`)+strings.Count(log, `.image-present"`)+strings.Count(log, `.pull-joined"`)).To(Equal(2), "each start found, joined or made the pull")
		Expect(log).To(ContainSubstring(`.pull-done"`))
		Expect(strings.Count(log, `.pull-fetching"`)).To(BeNumerically(">=", 3), "manifest, config and layer logged")
		removeAndWaitGone(k, agent, guid)
	})

	It("runs a task from the image and completes it with its result", func() {
		const guid = "it-docker-task"
		task := fmt.Sprintf(`{"task_guid": %q, "domain": "cellagent-it", "rootfs": %q, "memory_mb": 32, "disk_mb": 32,
 "result_file": "/tmp/r", "metric_tags": {"source_id": {"static": %q}},
 "action": {"run": {"path": "/bin/sh", "args": ["-c", "echo $IMAGE_GREETING > /tmp/r"], "user": "vcap"}}}`,
			guid, "docker://"+repo+":v1", guid)
		got := k.runTask(task, guid)
		Expect(got.Failed).To(BeFalse(), got.FailureReason)
		Expect(got.Result).To(Equal("from-the-image\n"))
	})

	It("pulls again an image whose record a pull left unchecked (as after a kill between fetch and check), then marks it checked", func() {
		ctr := func(args ...string) string {
			out, err := exec.Command("ctr", append([]string{"--address", agent.Config.Containerd.Socket, "-n", agent.Config.Containerd.Namespace}, args...)...).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(out))
			return string(out)
		}
		Expect(ctr("images", "ls", "name=="+repo+":v1")).To(ContainSubstring("cellagent.checked=sha256:"))
		ctr("images", "label", repo+":v1", "cellagent.checked=") // an empty value removes the label
		Expect(ctr("images", "ls", "name=="+repo+":v1")).NotTo(ContainSubstring("cellagent.checked="))
		pulls := strings.Count(agent.LogText(), `.pull-started"`)

		const guid = "it-docker-task-unchecked"
		task := fmt.Sprintf(`{"task_guid": %q, "domain": "cellagent-it", "rootfs": %q, "memory_mb": 32, "disk_mb": 32,
 "result_file": "/tmp/r", "metric_tags": {"source_id": {"static": %q}},
 "action": {"run": {"path": "/bin/sh", "args": ["-c", "echo $IMAGE_GREETING > /tmp/r"], "user": "vcap"}}}`,
			guid, "docker://"+repo+":v1", guid)
		_, err := k.bbsctl(task, "desire-task")
		Expect(err).NotTo(HaveOccurred())
		_, err = k.bbsctl("", "wait-task", guid, "--state", "Completed", "--timeout", waitLong.String())
		Expect(err).NotTo(HaveOccurred())
		out, err := k.bbsctl("", "task", guid)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(out)).To(ContainSubstring("from-the-image"))
		Expect(strings.Count(agent.LogText(), `.pull-started"`)).To(Equal(pulls+1), "the unchecked record was pulled again, not used")
		Expect(ctr("images", "ls", "name=="+repo+":v1")).To(ContainSubstring("cellagent.checked=sha256:"))
	})

	It("reports an instance of an image its registry does not have as crashed with why, and leaves nothing", func() {
		const guid = "it-docker-nope"
		_, err := k.bbsctl(dockerLRP(guid, "docker://"+repo+":nope", 1), "desire-lrp")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _, _ = k.bbsctl("", "remove-lrp", guid) })
		Eventually(func() ([]actualLRP, error) { return k.actualLRPs(guid) }, waitLong, time.Second).Should(
			ContainElement(And(HaveField("CrashCount", BeNumerically(">=", 1)),
				HaveField("CrashReason", ContainSubstring("image "+repo+":nope not found in its registry")))))
		lrps, err := k.actualLRPs(guid)
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("crashed instance: %+v\n", lrps)
		removeAndWaitGone(k, agent, guid)
		inv, err := testagent.TakeInventory(agent)
		Expect(err).NotTo(HaveOccurred())
		Expect(inv.Containers).To(BeEmpty())
		Expect(inv.Snapshots).To(BeEmpty())
		Expect(agent.LogText()).To(ContainSubstring(`.pull-failed"`))
	})

	It("pulls a private image only with its login, never logs the password, and a wrong login crashes with why even once the image is here", func() {
		wrongLogin := func(guid string) {
			_, err := k.bbsctl(dockerLRPWithLogin(guid, "docker://"+privateRepo+":v1", 1, "puller", "wrong-pw"), "desire-lrp")
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() { _, _ = k.bbsctl("", "remove-lrp", guid) })
			Eventually(func() ([]actualLRP, error) { return k.actualLRPs(guid) }, waitLong, time.Second).Should(
				ContainElement(And(HaveField("CrashCount", BeNumerically(">=", 1)),
					HaveField("CrashReason", ContainSubstring("registry refused the login for image "+privateRepo+":v1")))))
			removeAndWaitGone(k, agent, guid)
		}
		wrongLogin("it-docker-wrong-login")

		const guid = "it-docker-private"
		_, err := k.bbsctl(dockerLRPWithLogin(guid, "docker://"+privateRepo+":v1", 1, "puller", password), "desire-lrp")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _, _ = k.bbsctl("", "remove-lrp", guid) })
		lrps, err := k.waitActual(guid, "RUNNING", 1, waitLong)
		Expect(err).NotTo(HaveOccurred())
		body, err := get(appURL(lrps[0]) + "/env")
		Expect(err).NotTo(HaveOccurred())
		Expect(body).To(ContainSubstring("IMAGE_GREETING=from-the-image"))

		wrongLogin("it-docker-wrong-login-cached")
		removeAndWaitGone(k, agent, guid)
		log := agent.LogText()
		Expect(log).NotTo(ContainSubstring(password))
		Expect(log).NotTo(ContainSubstring("wrong-pw"))
		Expect(log).To(ContainSubstring(`.pull-refused"`), "the cached image was refused by the registry, not run")
	})

	It("leaves no container behind", func() {
		Eventually(func() ([]executor.Container, error) { return agent.Client.List(context.Background()) },
			waitLong, time.Second).Should(BeEmpty())
	})
})
