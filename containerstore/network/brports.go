package network

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Bridge ports already given the isolated flag (isolate). Every start adds
// a port, and reading every port's flag at each Filter made a start's cost
// grow with the ports on the bridge: ~14 ms of agent CPU per start at 400
// instances (perf of a 500 fill). A port is remembered by name and by the
// inode of its brif/<name> entry: a port deleted and made again under the
// same name gets a new sysfs node, so it is set again. A change of the
// flag itself (br_netfilter loaded or unloaded) sets every port again.
var (
	brPortsMu sync.Mutex
	brPorts   = map[string]*isolatedPorts{} // by brif directory; guarded by brPortsMu
)

type isolatedPorts struct {
	flag  string            // the value every port below was given
	ports map[string]uint64 // port name -> inode of brif/<name>
}

// isolatePorts gives every port in brif (/sys/class/net/<bridge>/brif) the
// isolated flag: the ports not set since the last call read their flag and
// write it where it differs.
func isolatePorts(brif, flag string) error {
	ports, err := readDirInodes(brif)
	if err != nil {
		return fmt.Errorf("list bridge ports: %w", err)
	}
	brPortsMu.Lock()
	defer brPortsMu.Unlock()
	known := brPorts[brif]
	if known == nil || known.flag != flag {
		known = &isolatedPorts{flag: flag}
	}
	set := make(map[string]uint64, len(ports))
	for _, p := range ports {
		if ino, ok := known.ports[p.name]; ok && ino == p.ino {
			set[p.name] = ino
			continue
		}
		path := filepath.Join(brif, p.name, "isolated")
		if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == flag {
			set[p.name] = p.ino
			continue
		}
		err := os.WriteFile(path, []byte(flag), 0o644)
		switch {
		case errors.Is(err, fs.ErrNotExist): // the port went away
		case err != nil:
			// What was set so far stays known; this port is tried again.
			known.ports = set
			brPorts[brif] = known
			return fmt.Errorf("isolate bridge port %s: %w", p.name, err)
		default:
			set[p.name] = p.ino
		}
	}
	known.ports = set
	brPorts[brif] = known
	return nil
}

// dirent is one entry of a directory: its name and inode.
type dirent struct {
	name string
	ino  uint64
}

// readDirInodes lists dir with getdents64, which gives each entry's inode
// without a stat per entry (os.ReadDir keeps it to itself).
func readDirInodes(dir string) ([]dirent, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	var out []dirent
	buf := make([]byte, 16<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "getdents", Path: dir, Err: err}
		}
		if n <= 0 {
			return out, nil
		}
		if out, err = parseDirents(buf[:n], out); err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
	}
}

// parseDirents appends the entries of a getdents64 answer (struct
// linux_dirent64: inode u64, offset s64, record length u16, type u8, name
// NUL-terminated, padded) to out, leaving out "." and "..".
func parseDirents(buf []byte, out []dirent) ([]dirent, error) {
	const head = 8 + 8 + 2 + 1
	for len(buf) > 0 {
		if len(buf) < head {
			return out, errors.New("getdents: short record")
		}
		reclen := int(binary.NativeEndian.Uint16(buf[16:18]))
		if reclen < head || reclen > len(buf) {
			return out, fmt.Errorf("getdents: record length %d", reclen)
		}
		name := buf[head:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if s := string(name); s != "." && s != ".." {
			out = append(out, dirent{name: s, ino: binary.NativeEndian.Uint64(buf[0:8])})
		}
		buf = buf[reclen:]
	}
	return out, nil
}
