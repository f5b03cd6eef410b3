// Package depcheck checks a package's imports against the project's
// dependency rules (dependencies point down; see DESIGN.md's package
// table). Each package states its own rule in a deps_test.go, so the rule
// sits beside the code it constrains and fails that package's tests.
//
// It asks `go list`, so it needs the go command, as `go test` has.
package depcheck

import (
	"os/exec"
	"slices"
	"strings"
)

// Module is the project's module path.
const Module = "github.com/cellagent/cellagent"

// Rule is what one package may import.
type Rule struct {
	// Package is relative to Module ("containerstore/network").
	Package string
	// Project, when not nil, lists every project package (relative to
	// Module) the package may import directly; any other is an error.
	Project []string
	// Forbidden lists project packages (relative to Module; a trailing
	// "/..." takes the subtree) the package must not import directly.
	Forbidden []string
	// ForbiddenDeps lists import path prefixes that must not be among
	// the package's transitive dependencies (what its binary links).
	ForbiddenDeps []string
	// StdlibOnly forbids every import outside the standard library and
	// the project.
	StdlibOnly bool
}

// T is the part of *testing.T that Check uses.
type T interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Check fails t for every import of r.Package that breaks r.
func Check(t T, r Rule) {
	t.Helper()
	pkg := Module + "/" + r.Package
	imports := list(t, "-f", `{{join .Imports "\n"}}`, pkg)
	allowed := map[string]bool{}
	for _, p := range r.Project {
		allowed[Module+"/"+p] = true
	}
	for _, imp := range imports {
		if !strings.HasPrefix(imp, Module+"/") {
			if first, _, _ := strings.Cut(imp, "/"); r.StdlibOnly && strings.Contains(first, ".") {
				t.Errorf("%s imports %s; it may import only the standard library", r.Package, imp)
			}
			continue
		}
		if r.Project != nil && !allowed[imp] {
			t.Errorf("%s imports %s; it may import only %v of this project", r.Package, rel(imp), r.Project)
		}
		for _, f := range r.Forbidden {
			if matches(rel(imp), f) {
				t.Errorf("%s imports %s, which it must not (rule %q): dependencies point down", r.Package, rel(imp), f)
			}
		}
	}
	if len(r.ForbiddenDeps) > 0 {
		for _, dep := range list(t, "-deps", "-f", "{{.ImportPath}}", pkg) {
			for _, f := range r.ForbiddenDeps {
				if strings.HasPrefix(dep, f) {
					t.Errorf("%s links %s (forbidden: %s)", r.Package, dep, f)
				}
			}
		}
	}
}

func matches(pkg, pattern string) bool {
	if sub, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == sub || strings.HasPrefix(pkg, sub+"/")
	}
	return pkg == pattern
}

func rel(imp string) string { return strings.TrimPrefix(imp, Module+"/") }

func list(t T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, out)
	}
	lines := strings.Fields(string(out))
	if len(lines) == 0 && strings.Contains(strings.Join(args, " "), "-deps") {
		t.Fatalf("go list %v answered nothing", args)
	}
	return lines
}

// OnlyImporter fails t for every package of the module that imports a
// path starting with prefix and is not among importers (relative to
// Module; a trailing "/..." takes the subtree): it keeps a third-party
// dependency behind one adapter.
func OnlyImporter(t T, prefix string, importers ...string) {
	t.Helper()
	lines := list(t, "-f", `{{.ImportPath}}{{range .Imports}},{{.}}{{end}}`, Module+"/...")
	if len(lines) < 10 {
		t.Fatalf("go list saw only %d packages", len(lines))
	}
	for _, line := range lines {
		fields := strings.Split(line, ",")
		if slices.ContainsFunc(importers, func(p string) bool { return matches(rel(fields[0]), p) }) {
			continue
		}
		for _, imp := range fields[1:] {
			if strings.HasPrefix(imp, prefix) {
				t.Errorf("%s imports %s; only %v may import %s", rel(fields[0]), imp, importers, prefix)
			}
		}
	}
}
