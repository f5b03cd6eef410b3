package execcheck

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fakeELF writes a minimal 64-bit little-endian ELF executable for
// machine: one PT_LOAD and, when interp is set, a PT_INTERP naming it.
// It is enough for debug/elf, not to run.
func fakeELF(t *testing.T, machine elf.Machine, interp string, mode os.FileMode) string {
	t.Helper()
	const ehsize, phentsize = 64, 56
	phnum := 1
	if interp != "" {
		phnum = 2
	}
	dataOff := uint64(ehsize + phentsize*phnum)
	var b bytes.Buffer
	w := func(v any) {
		if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
			t.Fatal(err)
		}
	}
	b.Write([]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)})
	b.Write(make([]byte, 16-7))
	w(uint16(elf.ET_EXEC))
	w(uint16(machine))
	w(uint32(elf.EV_CURRENT))
	w(uint64(0x400000)) // entry
	w(uint64(ehsize))   // phoff
	w(uint64(0))        // shoff: no sections
	w(uint32(0))        // flags
	w(uint16(ehsize))
	w(uint16(phentsize))
	w(uint16(phnum))
	w(uint16(64)) // shentsize
	w(uint16(0))  // shnum
	w(uint16(0))  // shstrndx
	prog := func(typ elf.ProgType, off, size uint64) {
		w(uint32(typ))
		w(uint32(elf.PF_R))
		w(off)
		w(0x400000 + off)
		w(0x400000 + off)
		w(size)
		w(size)
		w(uint64(1))
	}
	if interp != "" {
		prog(elf.PT_INTERP, dataOff, uint64(len(interp)+1))
	}
	prog(elf.PT_LOAD, 0, dataOff+uint64(len(interp)+1))
	if b.Len() != int(dataOff) {
		t.Fatalf("headers are %d bytes, want %d", b.Len(), dataOff)
	}
	b.WriteString(interp)
	b.WriteByte(0)
	path := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(path, b.Bytes(), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStatic(t *testing.T) {
	here, ok := machines[runtime.GOARCH]
	if !ok {
		t.Skipf("no ELF machine known for %s", runtime.GOARCH)
	}
	other := elf.EM_AARCH64
	if here == other {
		other = elf.EM_X86_64
	}
	script := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec envoy \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		path    string
		wantErr string // "" means static
		dynamic bool
	}{
		{name: "static, this machine", path: fakeELF(t, here, "", 0o755)},
		{name: "dynamic: an ELF interpreter", path: fakeELF(t, here, "/lib64/ld-linux-x86-64.so.2", 0o755),
			wantErr: "dynamically linked: needs the ELF interpreter /lib64/ld-linux-x86-64.so.2", dynamic: true},
		{name: "another architecture", path: fakeELF(t, other, "", 0o755), wantErr: "built for " + other.String()},
		{name: "not executable", path: fakeELF(t, here, "", 0o644), wantErr: "not executable (mode -rw-r--r--)"},
		{name: "a script", path: script, wantErr: "not an ELF executable"},
		{name: "a directory", path: t.TempDir(), wantErr: "not a regular file"},
		{name: "missing", path: filepath.Join(t.TempDir(), "cellproxy"), wantErr: "no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Static(tc.path)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Static = %v, want static", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Static = %v, want %q", err, tc.wantErr)
			case errors.Is(err, ErrDynamic) != tc.dynamic:
				t.Fatalf("Static = %v: ErrDynamic %v, want %v", err, errors.Is(err, ErrDynamic), tc.dynamic)
			}
		})
	}

	t.Run("a dynamically linked system program, when there is one", func(t *testing.T) {
		for _, p := range []string{"/bin/sh", "/usr/bin/env", "/bin/ls"} {
			p, err := filepath.EvalSymlinks(p)
			if err != nil {
				continue
			}
			f, err := elf.Open(p)
			if err != nil {
				continue
			}
			interp := false
			for _, prog := range f.Progs {
				interp = interp || prog.Type == elf.PT_INTERP
			}
			f.Close()
			if !interp {
				continue
			}
			if err := Static(p); !errors.Is(err, ErrDynamic) {
				t.Fatalf("Static(%s) = %v, want dynamically linked", p, err)
			}
			return
		}
		t.Skip("no dynamically linked program found")
	})
}

func TestExecutable(t *testing.T) {
	script := filepath.Join(t.TempDir(), "envoy")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := Executable(script); err != nil {
		t.Errorf("Executable(script) = %v", err)
	}
	if err := os.Chmod(script, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := Executable(script); err == nil || !strings.Contains(err.Error(), "not executable") {
		t.Errorf("Executable(0640 file) = %v, want not executable", err)
	}
}
