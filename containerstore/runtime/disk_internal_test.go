package runtime

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
)

func TestUpperOf(t *testing.T) {
	for name, tc := range map[string]struct {
		mounts []mount.Mount
		want   string
	}{
		"overlay": {[]mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"index=off", "workdir=/s/9/work", "upperdir=/s/9/fs", "lowerdir=/s/1/fs"}}}, "/s/9/fs"},
		"rw bind": {[]mount.Mount{{Type: "bind", Source: "/s/3/fs", Options: []string{"rbind", "rw"}}}, "/s/3/fs"},
		"ro bind": {[]mount.Mount{{Type: "bind", Source: "/s/3/fs", Options: []string{"rbind", "ro"}}}, ""},
		"other":   {[]mount.Mount{{Type: "btrfs", Source: "/dev/sda"}}, ""},
		"none":    {nil, ""},
		"two":     {[]mount.Mount{{Type: "bind", Source: "/a"}, {Type: "bind", Source: "/b"}}, ""},
	} {
		if got := upperOf(tc.mounts); got != tc.want {
			t.Errorf("%s: upperOf = %q, want %q", name, got, tc.want)
		}
	}
}

func TestAllocatedBytesCountsEachInodeOnce(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i) // not sparse, not zero pages
	}
	big := filepath.Join(dir, "tmp", "fill")
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(big, filepath.Join(dir, "again")); err != nil {
		t.Fatal(err)
	}
	n, err := allocatedBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n < 1<<20 || n >= 2<<20 {
		t.Fatalf("allocatedBytes = %d, want the 1 MiB file once (plus directories)", n)
	}
	if _, err := allocatedBytes(filepath.Join(dir, "gone")); !os.IsNotExist(err) {
		t.Fatalf("missing root: err = %v, want not exist", err)
	}
}
