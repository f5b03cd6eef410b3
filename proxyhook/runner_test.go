package proxyhook_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/internal/cellinit"
	"github.com/cellagent/cellagent/proxyhook"
)

// The agent's group runs the Hook: it owns the supervisors.
var _ ifrit.Runner = (*proxyhook.Hook)(nil)

// TestRunOwnsTheSupervisors: at Run's signal every supervisor (exec and
// cellinit alike) ends, Run returns only after they did (goleak checks
// the package), the proxies are neither signalled nor reported, the
// supervisors' containerd waits are cancelled, and no supervisor starts
// afterwards.
func TestRunOwnsTheSupervisors(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	f := newFixture(t, clk, nil)
	var execCtx context.Context
	stub := f.runner.ExecStub
	f.runner.ExecStub = func(ctx context.Context, l lager.Logger, guid, id string, p containerstore.ProcessSpec) (uint32, <-chan containerstore.Exit, error) {
		execCtx = ctx
		return stub(ctx, l, guid, id, p)
	}
	proc := ifrit.Invoke(f.hook)

	g1 := f.instance(t, "g1", 10, 0)
	if err := f.starter().Start(context.Background(), f.logger, g1); err != nil {
		t.Fatal(err)
	}
	// g2's proxy is cellinit's: its supervisor watches the state file.
	g2 := f.instance(t, "g2", 11, 0)
	dir := filepath.Dir(containerstore.LogPath(f.cfg.DataDir, "g2", "proxy"))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := cellinit.WriteState(dir, cellinit.ProxyState{Phase: cellinit.PhaseRunning, PID: 9, Seq: 1}); err != nil {
		t.Fatal(err)
	}
	g2.Init = &containerstore.ProcessInit{}
	if err := f.starter().Start(context.Background(), f.logger, g2); err != nil {
		t.Fatal(err)
	}
	clk.WaitForWatcherAndIncrement(0) // g2's watcher polls

	proc.Signal(os.Interrupt)
	if err := <-proc.Wait(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if execCtx.Err() == nil {
		t.Error("the supervisors' context is live after Run returned")
	}
	f.sink.none(t)
	if n := f.runner.SignalExecCallCount(); n != 0 {
		t.Errorf("%d proxies signalled at shutdown, want none", n)
	}

	// Supervision ended: an exit is nobody's to report, a new proxy gets
	// no supervisor (Exec is still made: the start itself is the store's).
	f.exit(0, containerstore.Exit{Status: 1})
	g3 := f.instance(t, "g3", 12, 0)
	if err := f.starter().Start(context.Background(), f.logger, g3); err != nil {
		t.Fatal(err)
	}
	f.exit(1, containerstore.Exit{Status: 1})
	f.sink.none(t)
	f.hook.Shutdown() // idempotent
}
