package containerstore_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The store's Instance is written by the store alone: a setup step returns
// a typed result the store merges (pipeline.go), and the calls that hand a
// step the store's *Instance (Ready, Alive, CoversCheck, Routable, Start,
// Adopt, ConfirmedAtAdoption, Verify, the network adapter's) only read it.
// The compiler cannot say so of a pointer; this check does, for the
// packages that implement those calls: no function there assigns through
// a *containerstore.Instance parameter (inst.X = ..., inst.X[i] = ...,
// inst.X.Y++, *inst = ...). Reassigning the parameter itself is fine. It
// does not follow aliases (x := inst.Ports; x[0] = ...): read such code
// as if it were an assignment through inst.
func TestStepsDoNotWriteTheStoresInstance(t *testing.T) {
	var bad []string
	for _, dir := range []string{"../proxyhook", "../internal/adapters"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("no Go files in %s: the check would pass by seeing nothing", dir)
		}
		seen := 0
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, file, src, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				var typ *ast.FuncType
				var body *ast.BlockStmt
				switch fn := n.(type) {
				case *ast.FuncDecl:
					typ, body = fn.Type, fn.Body
				case *ast.FuncLit:
					typ, body = fn.Type, fn.Body
				default:
					return true
				}
				params := instanceParams(typ)
				if len(params) == 0 || body == nil {
					return true
				}
				seen++
				for _, lhs := range writes(body) {
					if root, through := rootIdent(lhs); through && params[root] {
						bad = append(bad, fset.Position(lhs.Pos()).String())
					}
				}
				return true
			})
		}
		if seen == 0 {
			t.Errorf("%s: no function takes a *containerstore.Instance; update this check", dir)
		}
	}
	for _, b := range bad {
		t.Errorf("%s: writes the store's Instance; return it in the step's result for the store to merge", b)
	}
}

// instanceParams names fn's parameters of type *containerstore.Instance.
func instanceParams(fn *ast.FuncType) map[string]bool {
	names := map[string]bool{}
	for _, p := range fn.Params.List {
		star, ok := p.Type.(*ast.StarExpr)
		if !ok {
			continue
		}
		sel, ok := star.X.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "Instance" {
			continue
		}
		if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "containerstore" {
			continue
		}
		for _, n := range p.Names {
			names[n.Name] = true
		}
	}
	return names
}

// writes is every expression body assigns to or increments.
func writes(body *ast.BlockStmt) []ast.Expr {
	var out []ast.Expr
	ast.Inspect(body, func(n ast.Node) bool {
		switch s := n.(type) {
		case *ast.AssignStmt:
			if s.Tok != token.DEFINE {
				out = append(out, s.Lhs...)
			}
		case *ast.IncDecStmt:
			out = append(out, s.X)
		}
		return true
	})
	return out
}

// rootIdent is the variable an assigned expression starts from, and
// whether the assignment goes through it (a field, element or pointee)
// rather than replacing the variable itself.
func rootIdent(e ast.Expr) (string, bool) {
	through := false
	for {
		switch x := e.(type) {
		case *ast.Ident:
			return x.Name, through
		case *ast.SelectorExpr:
			e, through = x.X, true
		case *ast.IndexExpr:
			e, through = x.X, true
		case *ast.StarExpr:
			e, through = x.X, true
		case *ast.ParenExpr:
			e = x.X
		default:
			return "", false
		}
	}
}
