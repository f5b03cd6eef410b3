package runtime_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyTheAdapterImportsContainerd keeps containerd behind this package:
// nothing else in the module may import it directly.
func TestOnlyTheAdapterImportsContainerd(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "github.com/cellagent/cellagent/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		checked++
		pkg := fields[0]
		if pkg == "github.com/cellagent/cellagent/containerstore/runtime" {
			continue
		}
		for _, imp := range fields[1:] {
			if strings.HasPrefix(imp, "github.com/containerd/containerd") {
				t.Errorf("%s imports %s; only containerstore/runtime may import containerd", pkg, imp)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("go list saw only %d packages", checked)
	}
}
