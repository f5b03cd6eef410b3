package runtime_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellagent/cellagent/internal/depcheck"
)

// TestImportRules: the containerd adapter implements the store's interfaces and knows no other adapter.
func TestImportRules(t *testing.T) {
	depcheck.Check(t, depcheck.Rule{Package: "containerstore/runtime", Project: []string{"containerstore", "executor", "internal/cellinit"}})
}

// TestOnlyTheAdapterKnowsWhereCgroupsLive: the cgroup paths (v1 and v2
// differ) are this package's knowledge; any other package asks Cgroups.
func TestOnlyTheAdapterKnowsWhereCgroupsLive(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{.Dir}} {{join .GoFiles " "}}`, depcheck.Module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	files := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] == depcheck.Module+"/containerstore/runtime" {
			continue
		}
		for _, name := range fields[2:] {
			files++
			b, err := os.ReadFile(filepath.Join(fields[1], name))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "/sys/fs/cgroup") {
				t.Errorf("%s/%s names /sys/fs/cgroup; use runtime.Cgroups", fields[0], name)
			}
		}
	}
	if files < 50 {
		t.Fatalf("go list saw only %d files", files)
	}
}
