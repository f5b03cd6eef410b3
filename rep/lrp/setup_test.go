package lrp_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/rep/lrp"
	"github.com/cellagent/cellagent/rep/models"
)

const sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func download(to string) *models.Action {
	return &models.Action{DownloadAction: &models.DownloadAction{Artifact: "droplet", From: "http://127.0.0.1:8000/droplet.tgz",
		To: to, CacheKey: "droplets-pg-1", User: "vcap", ChecksumAlgorithm: "sha256", ChecksumValue: sha}}
}

var wantDownload = executor.SetupAction{Download: &executor.DownloadAction{Artifact: "droplet", From: "http://127.0.0.1:8000/droplet.tgz",
	To: ".", CacheKey: "droplets-pg-1", User: "vcap", Checksum: executor.Checksum{Algorithm: "sha256", Value: sha}}}

var _ = Describe("Setup and cached dependencies", func() {
	It("translates what the Cloud Controller sends for a buildpack app: a serial download of the droplet and the lifecycle as a cached dependency", func() {
		d := desired()
		d.Setup = &models.Action{SerialAction: &models.SerialAction{Actions: []*models.Action{download(".")}}}
		d.CachedDependencies = []*models.CachedDependency{{Name: "lifecycle", From: "http://127.0.0.1:8000/lifecycle.tgz",
			To: "/tmp/lifecycle", CacheKey: "buildpack-cflinuxfs4-lifecycle"}}
		req, err := lrp.Translate(d, 0, settings)
		Expect(err).NotTo(HaveOccurred())
		Expect(req.Setup).To(Equal(&executor.SetupAction{Serial: []executor.SetupAction{wantDownload}}))
		Expect(req.CachedDependencies).To(Equal([]executor.CachedDependency{{Name: "lifecycle", From: "http://127.0.0.1:8000/lifecycle.tgz",
			To: "/tmp/lifecycle", CacheKey: "buildpack-cflinuxfs4-lifecycle"}}))
		Expect(req.Validate(true)).To(Succeed())
	})

	It("keeps try, timeout, parallel and emit_progress with their settings", func() {
		d := desired()
		d.Setup = &models.Action{EmitProgressAction: &models.EmitProgressAction{StartMessage: "start", SuccessMessage: "ok", FailureMessagePrefix: "failed",
			Action: &models.Action{TimeoutAction: &models.TimeoutAction{TimeoutMs: 30000,
				Action: &models.Action{ParallelAction: &models.ParallelAction{Actions: []*models.Action{download("."),
					{TryAction: &models.TryAction{Action: download("/tmp/x")}}}}}}}}}
		req, err := lrp.Translate(d, 0, settings)
		Expect(err).NotTo(HaveOccurred())
		tryDownload := wantDownload
		tryDownload.Download = &executor.DownloadAction{}
		*tryDownload.Download = *wantDownload.Download
		tryDownload.Download.To = "/tmp/x"
		Expect(req.Setup).To(Equal(&executor.SetupAction{EmitProgress: &executor.EmitProgressAction{StartMessage: "start", SuccessMessage: "ok",
			FailureMessagePrefix: "failed", Action: executor.SetupAction{Timeout: &executor.TimeoutAction{Timeout: executor.Duration(30 * time.Second),
				Action: executor.SetupAction{Parallel: []executor.SetupAction{wantDownload, {Try: &tryDownload}}}}}}}))
		Expect(req.Validate(true)).To(Succeed())
	})

	It("splits a task's serial into its downloads and its run", func() {
		t := &models.TaskDefinition{RootFs: "preloaded:cflinuxfs4", MemoryMb: 64, DiskMb: 32,
			Action:             &models.Action{SerialAction: &models.SerialAction{Actions: []*models.Action{download("."), run("/home/vcap/run.sh")}}},
			CachedDependencies: []*models.CachedDependency{{From: "https://cc/l.tgz", To: "/tmp/lifecycle", CacheKey: "l"}}}
		req, err := lrp.TranslateTask(t, settings)
		Expect(err).NotTo(HaveOccurred())
		Expect(req.Setup).To(Equal(&executor.SetupAction{Serial: []executor.SetupAction{wantDownload}}))
		Expect(req.Process.Path).To(Equal("/home/vcap/run.sh"))
		Expect(req.CachedDependencies).To(HaveLen(1))
		Expect(req.Validate(true)).To(Succeed())
	})

	It("refuses a task whose serial runs something after its run", func() {
		t := &models.TaskDefinition{RootFs: "preloaded:cflinuxfs4", MemoryMb: 64,
			Action: &models.Action{SerialAction: &models.SerialAction{Actions: []*models.Action{run("/a"), download(".")}}}}
		_, err := lrp.TranslateTask(t, settings)
		Expect(err).To(BeAssignableToTypeOf(&lrp.Refusal{}))
		Expect(err.Error()).To(ContainSubstring("serial action with 2 actions"))
	})

	DescribeTable("the run request refuses setup it cannot do safely",
		func(change func(*executor.RunRequest), reason string) {
			d := desired()
			d.Setup = download(".")
			d.CachedDependencies = []*models.CachedDependency{{From: "http://h/l.tgz", To: "/tmp/lifecycle", CacheKey: "l"}}
			req, err := lrp.Translate(d, 0, settings)
			Expect(err).NotTo(HaveOccurred())
			change(&req)
			err = req.Validate(true)
			Expect(err).To(MatchError(executor.ErrInvalidRequest))
			Expect(err.Error()).To(ContainSubstring(reason))
		},
		Entry("a to leaving the home", func(r *executor.RunRequest) { r.Setup.Download.To = "../../etc" }, "'..' is not allowed"),
		Entry("a to leaving the root", func(r *executor.RunRequest) { r.Setup.Download.To = "/tmp/../../etc" }, "'..' is not allowed"),
		Entry("a file URL", func(r *executor.RunRequest) { r.Setup.Download.From = "file:///etc/shadow" }, "http or https"),
		Entry("an unknown checksum algorithm", func(r *executor.RunRequest) { r.Setup.Download.Checksum.Algorithm = "crc32" }, "md5, sha1 or sha256"),
		Entry("a short checksum", func(r *executor.RunRequest) { r.Setup.Download.Checksum.Value = "abc" }, "64 hex digits"),
		Entry("a relative cached dependency", func(r *executor.RunRequest) { r.CachedDependencies[0].To = "tmp/l" }, "absolute path"),
		Entry("a cached dependency over /proc", func(r *executor.RunRequest) { r.CachedDependencies[0].To = "/proc/self" }, "is reserved (/proc)"),
		Entry("a cached dependency over the instance credentials", func(r *executor.RunRequest) {
			r.CachedDependencies[0].To = "/etc/cf-instance-credentials"
		}, "is reserved (/etc/cf-instance-credentials)"),
		Entry("a cached dependency without cache key", func(r *executor.RunRequest) { r.CachedDependencies[0].CacheKey = "" }, "cache_key is required"),
		Entry("a zero timeout", func(r *executor.RunRequest) {
			r.Setup = &executor.SetupAction{Timeout: &executor.TimeoutAction{Action: *r.Setup}}
		}, "setup timeout"),
	)
})
