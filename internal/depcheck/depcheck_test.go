package depcheck_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// recorder is a depcheck.T that keeps the errors.
type recorder struct{ errs []string }

func (r *recorder) Helper()                      {}
func (r *recorder) Errorf(f string, args ...any) { r.errs = append(r.errs, fmt.Sprintf(f, args...)) }
func (r *recorder) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }

// TestCheckFindsWhatBreaksARule: each kind of rule fails on a package
// known to break it, and passes on one that keeps it.
func TestCheckFindsWhatBreaksARule(t *testing.T) {
	for _, c := range []struct {
		rule depcheck.Rule
		want string // "" = no error
	}{
		{depcheck.Rule{Package: "executor/httpapi", Project: []string{}}, "imports executor; it may import only"},
		{depcheck.Rule{Package: "executor/httpapi", Project: []string{"executor"}}, ""},
		{depcheck.Rule{Package: "proxyhook", Forbidden: []string{"containerstore/..."}}, "imports containerstore, which it must not"},
		{depcheck.Rule{Package: "proxyhook", Forbidden: []string{"containerstore/runtime/..."}}, ""},
		{depcheck.Rule{Package: "cmd/cellagent", ForbiddenDeps: []string{"github.com/containerd/containerd"}}, "links github.com/containerd/containerd"},
		{depcheck.Rule{Package: "metrics", StdlibOnly: true}, "imports github.com/prometheus"},
		{depcheck.Rule{Package: "executor", StdlibOnly: true, Project: []string{}}, ""},
	} {
		var r recorder
		depcheck.Check(&r, c.rule)
		got := strings.Join(r.errs, "\n")
		if c.want == "" && got != "" || !strings.Contains(got, c.want) {
			t.Errorf("%+v: errors %q, want %q", c.rule, got, c.want)
		}
	}
}

// TestOnlyImporterFindsAnotherImporter: a dependency imported by two
// packages fails for the one that is not named, and passes when the only
// importer is named.
func TestOnlyImporterFindsAnotherImporter(t *testing.T) {
	var r recorder
	depcheck.OnlyImporter(&r, "github.com/nats-io/nats.go", "routeemitter/embeddednats", "integration/...")
	if got := strings.Join(r.errs, "\n"); !strings.Contains(got, "routeemitter/routetable imports github.com/nats-io/nats.go") {
		t.Errorf("errors %q, want routetable named", got)
	}
	r = recorder{}
	depcheck.OnlyImporter(&r, "github.com/nats-io/nats-server/", "routeemitter/embeddednats", "integration/...")
	if len(r.errs) != 0 {
		t.Errorf("errors %q, want none", r.errs)
	}
}
