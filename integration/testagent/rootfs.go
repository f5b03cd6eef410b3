package testagent

import (
	"io"
	"os"
	"path/filepath"
)

// MakeRootfs assembles a busybox rootfs with the demo app at /app/server
// and a non-root user vcap (uid 2000), like the scripts' make_rootfs.
func MakeRootfs(dir, demoApp string) error {
	for _, d := range []string{"bin", "etc", "tmp", "app", "proc", "sys", "dev", "home/vcap",
		"etc/cf-instance-credentials", "etc/cf-assets/envoy_config"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyExec("/bin/busybox", filepath.Join(dir, "bin/busybox")); err != nil {
		return err
	}
	for _, a := range []string{"sh", "ls", "cat", "echo", "sleep", "env", "id", "ps", "wget", "nc", "kill", "date", "true", "false", "head", "tail", "mkdir"} {
		p := filepath.Join(dir, "bin", a)
		_ = os.Remove(p)
		if err := os.Symlink("busybox", p); err != nil {
			return err
		}
	}
	if err := copyExec(demoApp, filepath.Join(dir, "app/server")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/cf-assets/envoy"), nil, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nvcap:x:2000:2000:vcap:/home/vcap:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\nvcap:x:2000:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	return os.Chown(filepath.Join(dir, "home/vcap"), 2000, 2000)
}

func copyExec(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	_ = os.Remove(dst)
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
