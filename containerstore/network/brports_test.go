package network_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/containerstore/network"
)

var _ = Describe("isolating bridge ports", func() {
	var brif string

	// port makes brif/<name>/isolated holding value, in a new directory
	// (a new inode, as sysfs gives a port made again) that replaces any
	// port of that name.
	port := func(name, value string) {
		GinkgoHelper()
		tmp := filepath.Join(brif, "."+name+".new")
		Expect(os.Mkdir(tmp, 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(tmp, "isolated"), []byte(value+"\n"), 0o644)).To(Succeed())
		Expect(os.RemoveAll(filepath.Join(brif, name))).To(Succeed())
		Expect(os.Rename(tmp, filepath.Join(brif, name))).To(Succeed())
	}
	flagOf := func(name string) string {
		GinkgoHelper()
		b, err := os.ReadFile(filepath.Join(brif, name, "isolated"))
		Expect(err).NotTo(HaveOccurred())
		return string(b)
	}
	// touch changes a port's flag behind isolatePorts' back, as no one but
	// the agent does on a cell.
	touch := func(name, value string) {
		GinkgoHelper()
		Expect(os.WriteFile(filepath.Join(brif, name, "isolated"), []byte(value), 0o644)).To(Succeed())
	}

	BeforeEach(func() {
		brif = filepath.Join(GinkgoT().TempDir(), "brif")
		Expect(os.Mkdir(brif, 0o755)).To(Succeed())
	})

	It("sets every port once, then only the ports that came since", func() {
		port("veth1", "0")
		port("veth2", "1")
		Expect(network.IsolatePorts(brif, "1")).To(Succeed())
		Expect(flagOf("veth1")).To(Equal("1"))
		Expect(flagOf("veth2")).To(Equal("1\n"), "a port that had the flag is not written")

		touch("veth1", "x")
		port("veth3", "0")
		Expect(network.IsolatePorts(brif, "1")).To(Succeed())
		Expect(flagOf("veth3")).To(Equal("1"), "the new port")
		Expect(flagOf("veth1")).To(Equal("x"), "a port set before is not read again")
	})

	It("sets a port made again under the same name (a new sysfs node)", func() {
		port("veth1", "0")
		Expect(network.IsolatePorts(brif, "1")).To(Succeed())
		port("veth1", "0")
		Expect(network.IsolatePorts(brif, "1")).To(Succeed())
		Expect(flagOf("veth1")).To(Equal("1"))
	})

	It("sets every port again when the flag changes (br_netfilter came or went)", func() {
		port("veth1", "0")
		port("veth2", "0")
		Expect(network.IsolatePorts(brif, "1")).To(Succeed())
		Expect(network.IsolatePorts(brif, "0")).To(Succeed())
		Expect(flagOf("veth1")).To(Equal("0"))
		Expect(flagOf("veth2")).To(Equal("0"))
		touch("veth1", "x")
		Expect(network.IsolatePorts(brif, "1")).To(Succeed())
		Expect(flagOf("veth1")).To(Equal("1"))
		Expect(flagOf("veth2")).To(Equal("1"))
	})

	It("forgets a port that went away and sets one that comes back under its name", func() {
		port("veth1", "0")
		Expect(network.IsolatePorts(brif, "1")).To(Succeed())
		Expect(os.RemoveAll(filepath.Join(brif, "veth1"))).To(Succeed())
		Expect(network.IsolatePorts(brif, "1")).To(Succeed())
		port("veth1", "0")
		Expect(network.IsolatePorts(brif, "1")).To(Succeed())
		Expect(flagOf("veth1")).To(Equal("1"))
	})

	It("fails with the port's name when its flag cannot be written, and sets it at the next call", func() {
		port("veth1", "0")
		// A directory where the flag file should be: not writable.
		Expect(os.Remove(filepath.Join(brif, "veth1", "isolated"))).To(Succeed())
		Expect(os.Mkdir(filepath.Join(brif, "veth1", "isolated"), 0o755)).To(Succeed())
		err := network.IsolatePorts(brif, "1")
		Expect(err).To(MatchError(ContainSubstring("isolate bridge port veth1")))
		Expect(os.Remove(filepath.Join(brif, "veth1", "isolated"))).To(Succeed())
		touch("veth1", "0")
		Expect(network.IsolatePorts(brif, "1")).To(Succeed())
		Expect(flagOf("veth1")).To(Equal("1"))
	})

	It("fails when the bridge has no port directory", func() {
		Expect(network.IsolatePorts(filepath.Join(brif, "missing"), "1")).To(MatchError(ContainSubstring("list bridge ports")))
	})

	It("reads a directory's names and inodes in one listing, as stat sees them, past one getdents buffer", func() {
		want := map[string]uint64{}
		for i := range 600 { // more than 16 KiB of records
			name := "port-with-a-longish-name-" + strconv.Itoa(i)
			Expect(os.Mkdir(filepath.Join(brif, name), 0o755)).To(Succeed())
			fi, err := os.Stat(filepath.Join(brif, name))
			Expect(err).NotTo(HaveOccurred())
			want[name] = fi.Sys().(*syscall.Stat_t).Ino
		}
		got, err := network.DirInodes(brif)
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal(want))
	})
	It("reads getdents64 records, leaving out . and .., and refuses a torn one", func() {
		rec := func(ino uint64, name string) []byte {
			b := binary.NativeEndian.AppendUint64(nil, ino)
			b = binary.NativeEndian.AppendUint64(b, 0)
			reclen := (19 + len(name) + 1 + 7) &^ 7
			b = binary.NativeEndian.AppendUint16(b, uint16(reclen))
			b = append(b, 4)
			b = append(b, name...)
			return append(b, make([]byte, reclen-len(b))...)
		}
		buf := append(append(append(rec(1, "."), rec(2, "..")...), rec(77, "vethab")...), rec(78, "x")...)
		got, err := network.ParseDirents(buf)
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal(map[string]uint64{"vethab": 77, "x": 78}))

		_, err = network.ParseDirents(buf[:len(buf)-3])
		Expect(err).To(MatchError(ContainSubstring("record length")))
		_, err = network.ParseDirents(buf[:10])
		Expect(err).To(MatchError(ContainSubstring("short record")))
	})
})
