package execcheck

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
)

// ErrDynamic is wrapped by Static's error for a dynamically linked ELF.
var ErrDynamic = errors.New("dynamically linked")

// Executable checks that path is a regular file someone may execute.
func Executable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%s)", st.Mode().Type())
	}
	if st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("not executable (mode %s)", st.Mode().Perm())
	}
	return nil
}

// machines maps GOARCH to the ELF machine of its executables.
var machines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "386": elf.EM_386, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM,
	"ppc64le": elf.EM_PPC64, "ppc64": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV,
	"loong64": elf.EM_LOONGARCH, "mips64le": elf.EM_MIPS, "mips64": elf.EM_MIPS, "mipsle": elf.EM_MIPS, "mips": elf.EM_MIPS,
}

// Static checks that path is an executable ELF program for this
// machine's architecture that needs no ELF interpreter and no shared
// library: it runs in any rootfs.
func Static(path string) error {
	if err := Executable(path); err != nil {
		return err
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("not an ELF executable (%s)", f.Type)
	}
	if want, ok := machines[runtime.GOARCH]; ok && f.Machine != want {
		return fmt.Errorf("built for %s, this machine runs %s (%s)", f.Machine, want, runtime.GOARCH)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		interp := make([]byte, p.Filesz)
		if _, err := p.ReadAt(interp, 0); err != nil {
			return fmt.Errorf("%w (reading its ELF interpreter: %v)", ErrDynamic, err)
		}
		return fmt.Errorf("%w: needs the ELF interpreter %s", ErrDynamic, strings.TrimRight(string(interp), "\x00"))
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("read its dynamic section: %w", err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("%w: needs %s", ErrDynamic, strings.Join(libs, ", "))
	}
	return nil
}
