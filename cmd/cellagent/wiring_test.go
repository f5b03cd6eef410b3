package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"strings"
	"testing"
)

// TestWiringConnectsNothingAfterConstruction: run builds each part with
// its dependencies in its constructor or configuration, in dependency
// order; where parts need each other, the consumer owns a mailbox made
// first (the store's Inbox, metrics' Observer, the route emitter's
// PresenceFeed), or the part both need is split out and made first (the
// credential manager's Issuer, which the proxy needs and the manager
// tells of rotations). No Set*/Add*/Observe* call and no field assignment
// finishes the wiring later.
func TestWiringConnectsNothingAfterConstruction(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "wire.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var run *ast.FuncDecl
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == "run" {
			run = fd
		}
	}
	if run == nil {
		t.Fatal("no func run in wire.go")
	}
	late := regexp.MustCompile(`^(Set|Add|Observe)[A-Z]`)
	var found []string
	constructors := 0 // New* calls seen: the walk did reach the wiring
	ast.Inspect(run.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && strings.HasPrefix(sel.Sel.Name, "New") {
				constructors++
			}
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && late.MatchString(sel.Sel.Name) {
				if x, ok := sel.X.(*ast.Ident); ok {
					found = append(found, x.Name+"."+sel.Sel.Name)
				}
			}
		case *ast.AssignStmt:
			for _, lhs := range n.Lhs {
				if sel, ok := lhs.(*ast.SelectorExpr); ok {
					if x, ok := sel.X.(*ast.Ident); ok {
						found = append(found, x.Name+"."+sel.Sel.Name)
					}
				}
			}
		}
		return true
	})
	if constructors < 5 {
		t.Fatalf("saw %d New* calls in run: the check no longer looks at the wiring", constructors)
	}
	for _, c := range found {
		t.Errorf("wire.go run: %s connects a part after its construction; pass it to the constructor or its configuration", c)
	}
}
