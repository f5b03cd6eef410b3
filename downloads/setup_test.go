package downloads_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/downloads"
	"github.com/cellagent/cellagent/executor"
)

// recordingTarget records what each download's artifact held, by to.
type recordingTarget struct {
	mu  sync.Mutex
	got map[string]string
}

func (t *recordingTarget) Extract(_ context.Context, d *executor.DownloadAction, a *downloads.Artifact) error {
	b, err := io.ReadAll(a)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.got[d.To] = string(b)
	return err
}

var _ = Describe("Runner", func() {
	var (
		srv    *artifactServer
		clk    *fakeclock.FakeClock
		target *recordingTarget
		log    *bytes.Buffer
		runner *downloads.Runner
	)

	dl := func(path, to string) executor.SetupAction {
		return executor.SetupAction{Download: &executor.DownloadAction{Artifact: path[1:], From: srv.URL + path, To: to}}
	}

	BeforeEach(func() {
		srv = newArtifactServer()
		srv.put("/app", []byte("app"))
		srv.put("/lib", []byte("lib"))
		clk = fakeclock.NewFakeClock(time.Unix(1_700_000_000, 0))
		target = &recordingTarget{got: map[string]string{}}
		log = &bytes.Buffer{}
		runner = &downloads.Runner{Cache: newCache(GinkgoT().TempDir(), clk, 1<<20), Target: target, Log: log, Limiter: make(chan struct{}, 2)}
	})

	run := func(a executor.SetupAction) error {
		return runner.Run(context.Background(), lagertest.NewTestLogger("t"), &a)
	}

	It("runs a serial's downloads in order, logging them as Diego does", func() {
		Expect(run(executor.SetupAction{Serial: []executor.SetupAction{dl("/app", "."), dl("/lib", "/tmp/lib")}})).To(Succeed())
		Expect(target.got).To(Equal(map[string]string{".": "app", "/tmp/lib": "lib"}))
		Expect(log.String()).To(Equal("Downloading app...\nDownloaded app (3B)\nDownloading lib...\nDownloaded lib (3B)\n"))
	})

	It("stops a serial at its first failure, with the artifact named in the error", func() {
		err := run(executor.SetupAction{Serial: []executor.SetupAction{dl("/missing", "."), dl("/lib", "/tmp/lib")}})
		Expect(err).To(MatchError(ContainSubstring("downloading missing failed: GET " + srv.URL + "/missing: status 404")))
		Expect(target.got).To(BeEmpty())
	})

	It("runs a parallel's actions all, and fails with every failure", func() {
		err := run(executor.SetupAction{Parallel: []executor.SetupAction{dl("/missing", "/a"), dl("/lib", "/b"), dl("/gone", "/c")}})
		Expect(err).To(MatchError(And(ContainSubstring("missing failed"), ContainSubstring("gone failed"))))
		Expect(target.got).To(Equal(map[string]string{"/b": "lib"}))
	})

	It("ignores a try's failure", func() {
		inner := dl("/missing", "/a")
		Expect(run(executor.SetupAction{Serial: []executor.SetupAction{{Try: &inner}, dl("/app", ".")}})).To(Succeed())
		Expect(target.got).To(HaveKey("."))
	})

	It("writes emit_progress's messages around its action", func() {
		ok, bad := dl("/app", "."), dl("/missing", ".")
		Expect(run(executor.SetupAction{EmitProgress: &executor.EmitProgressAction{Action: ok, StartMessage: "Starting", SuccessMessage: "Done"}})).To(Succeed())
		Expect(run(executor.SetupAction{EmitProgress: &executor.EmitProgressAction{Action: bad, FailureMessagePrefix: "Setup failed"}})).NotTo(Succeed())
		Expect(log.String()).To(HavePrefix("Starting\nDownloading app...\nDownloaded app (3B)\nDone\n"))
		Expect(log.String()).To(ContainSubstring("Setup failed: downloading missing failed"))
	})

	// timedOut runs a download of /app under a one-minute timeout, fires
	// the timeout as soon as its timer exists and answers the error.
	timedOut := func() error {
		errs := make(chan error, 1)
		go func() {
			errs <- run(executor.SetupAction{Timeout: &executor.TimeoutAction{Action: dl("/app", "."), Timeout: executor.Duration(time.Minute)}})
		}()
		Eventually(clk.WatcherCount).Should(Equal(1))
		clk.Increment(time.Minute)
		var err error
		Eventually(errs).Should(Receive(&err))
		return err
	}

	It("says which download a timeout ended while it waited for its turn", func() {
		runner.Limiter = make(chan struct{}, 1)
		runner.Limiter <- struct{}{} // every slot taken
		Expect(timedOut()).To(MatchError(ContainSubstring("downloading app failed: exceeded 1m0s timeout")))
		Expect(log.String()).To(ContainSubstring("downloading app failed: exceeded 1m0s timeout"))
	})

	It("fails a timeout's action that has not finished in time", func() {
		hang := make(chan struct{})
		srv.Config.Handler = httpHang(hang)
		DeferCleanup(func() { close(hang) })
		err := timedOut()
		Expect(err).To(MatchError(ContainSubstring("downloading app failed: exceeded 1m0s timeout")))
		Expect(errors.Is(err, context.Canceled)).To(BeFalse())
	})
})
