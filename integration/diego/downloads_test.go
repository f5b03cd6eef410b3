package diego_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
	"github.com/cellagent/cellagent/integration/testagent"
)

// tgzOf is a gzip-compressed tar of files (name -> content), each mode
// 0755 so scripts run.
func tgzOf(files map[string]string) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		Expect(tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg})).To(Succeed())
		_, err := tw.Write([]byte(body))
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(tw.Close()).To(Succeed())
	Expect(gz.Close()).To(Succeed())
	return buf.Bytes()
}

// serveArtifacts serves each body at its path on loopback (the blobstore
// and the Cloud Controller's download URLs), until the spec ends.
func serveArtifacts(bodies map[string][]byte) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := bodies[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		sum := sha256.Sum256(b)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	}))
	DeferCleanup(srv.Close)
	return srv.URL
}

func sha256Of(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// lifecycle is the cached dependency: its launcher starts the droplet's
// start command from the app directory, as the buildpack lifecycle's
// launcher does.
func lifecycle() []byte {
	return tgzOf(map[string]string{"launcher": "#!/bin/sh\ncd /home/vcap/app && exec ./start.sh\n"})
}

// droplet is the app: it notes who owns its files, then serves.
func droplet() []byte {
	return tgzOf(map[string]string{
		"app/start.sh":     "#!/bin/sh\nls -ln /home/vcap/app > /tmp/owners\nexec /app/server\n",
		"app/greeting.txt": "hello from the droplet\n",
	})
}

// ccDesiredLRP is a desired LRP in the shape the Cloud Controller gives a
// buildpack app: the droplet downloaded into the home (to "."), with its
// sha256, the lifecycle as a cached dependency, codependent[run launcher].
func ccDesiredLRP(guid, base, dropletSum string) string {
	return fmt.Sprintf(`{"process_guid": %q, "domain": "cellagent-it", "rootfs": "preloaded:%s", "instances": 1,
 "memory_mb": 64, "disk_mb": 64, "ports": [%d], "env": [{"name": "PORT", "value": "%d"}],
 "legacy_download_user": "vcap",
 "setup": {"serial": {"actions": [{"download": {"artifact": "droplet", "from": "%s/droplet.tgz", "to": ".",
   "cache_key": "droplets-%s", "user": "vcap", "checksum_algorithm": "sha256", "checksum_value": %q}}]}},
 "cached_dependencies": [{"name": "buildpack lifecycle", "from": "%s/lifecycle.tgz", "to": "/tmp/lifecycle",
   "cache_key": "buildpack-%s-lifecycle"}],
 "action": {"codependent": {"actions": [{"run": {"path": "/tmp/lifecycle/launcher", "user": "vcap"}}]}},
 "check_definition": {"checks": [{"tcp_check": {"port": %d}}]},
 "start_timeout_ms": 60000, "log_guid": %q, "metric_tags": {"source_id": {"static": %q}}}`,
		guid, stack, appPort, appPort, base, guid, dropletSum, base, stack, appPort, guid, guid)
}

// downloadSpecs are the specs of setup downloads and cached dependencies,
// on the cell of the Describe that calls it.
func downloadSpecs(kf func() *kit, agentf func() *testagent.Agent) {
	It("runs an app desired as the Cloud Controller does: droplet downloaded into the home, lifecycle mounted from the cache", func() {
		k, agent := kf(), agentf()
		const guid = "it-cc-app"
		app := droplet()
		base := serveArtifacts(map[string][]byte{"/droplet.tgz": app, "/lifecycle.tgz": lifecycle()})
		_, err := k.bbsctl(ccDesiredLRP(guid, base, sha256Of(app)), "desire-lrp")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { removeAndWaitGone(k, agent, guid) })
		lrps, err := k.waitActual(guid, "RUNNING", 1, waitLong)
		Expect(err).NotTo(HaveOccurred())

		Expect(get(appURL(lrps[0]))).To(ContainSubstring("hello from " + lrps[0].InstanceGUID))
		Expect(get(appURL(lrps[0]) + "/read?path=/home/vcap/app/greeting.txt")).To(Equal("hello from the droplet\n"))
		// The droplet's files belong to the download's user (vcap, 2000).
		owners, err := get(appURL(lrps[0]) + "/read?path=/tmp/owners")
		Expect(err).NotTo(HaveOccurred())
		Expect(owners).To(MatchRegexp(`\s2000\s+2000\s.*start\.sh`))
		// The lifecycle is read-only in the container.
		Expect(get(appURL(lrps[0]) + "/read?path=/proc/self/mountinfo")).To(MatchRegexp(`/tmp/lifecycle ro,`))
		Expect(agent.LogText()).To(ContainSubstring("downloaded"))
	})

	It("crashes an instance whose droplet has the wrong checksum, with the reason, and runs nothing", func() {
		k, agent := kf(), agentf()
		const guid = "it-cc-badsum"
		base := serveArtifacts(map[string][]byte{"/droplet.tgz": droplet(), "/lifecycle.tgz": lifecycle()})
		_, err := k.bbsctl(ccDesiredLRP(guid, base, sha256Of([]byte("another droplet"))), "desire-lrp")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { removeAndWaitGone(k, agent, guid) })
		Eventually(func() ([]actualLRP, error) { return k.actualLRPs(guid) }, waitLong, time.Second).Should(
			ContainElement(And(HaveField("CrashCount", BeNumerically(">=", 1)),
				HaveField("CrashReason", And(ContainSubstring("downloading droplet failed: checksum mismatch"),
					ContainSubstring("expected "+sha256Of([]byte("another droplet"))))))))
		for _, c := range diegoContainers(agent, guid) {
			Expect(c.State).NotTo(Equal(executor.StateRunning))
			Expect(c.RunResult.FailureCode).To(BeElementOf(executor.FailureSetup, executor.FailureCode("")))
		}
		lrps, err := k.actualLRPs(guid)
		Expect(err).NotTo(HaveOccurred())
		Expect(lrps).NotTo(ContainElement(HaveField("State", "RUNNING")))
	})

	It("runs a task that downloads its input, then runs, and completes it with its result", func() {
		k, agent := kf(), agentf()
		const guid = "it-task-download"
		input := tgzOf(map[string]string{"data/input.txt": "from the download\n"})
		base := serveArtifacts(map[string][]byte{"/input.tgz": input})
		task := fmt.Sprintf(`{"task_guid": %q, "domain": "cellagent-it", "rootfs": "preloaded:%s",
 "memory_mb": 32, "disk_mb": 32, "result_file": "/tmp/r", "legacy_download_user": "vcap", "metric_tags": {"source_id": {"static": %q}},
 "action": {"serial": {"actions": [
   {"download": {"artifact": "input", "from": "%s/input.tgz", "to": "/tmp/in", "user": "vcap", "checksum_algorithm": "sha256", "checksum_value": %q}},
   {"run": {"path": "/bin/sh", "args": ["-c", "cat /tmp/in/data/input.txt > /tmp/r"], "user": "vcap"}}]}}}`,
			guid, stack, guid, base, sha256Of(input))
		got := k.runTask(task, guid)
		Expect(got.FailureReason).To(BeEmpty())
		Expect(got.Failed).To(BeFalse())
		Expect(got.Result).To(Equal("from the download\n"))
		Eventually(func() ([]executor.Container, error) { return agent.Client.List(context.Background()) },
			waitLong, time.Second).ShouldNot(ContainElement(HaveField("GUID", guid)))
	})
}
