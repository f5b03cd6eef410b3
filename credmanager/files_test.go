package credmanager_test

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"golang.org/x/sys/unix"

	"github.com/cellagent/cellagent/credmanager"
)

// matchPair is pairMatches without Gomega, for reader goroutines.
func matchPair(certPEM, keyPEM []byte) (bool, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return false, errors.New("short read")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return false, err
	}
	key, err := parseDiegoKey(kb)
	if err != nil {
		return false, err
	}
	return key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey), nil
}

var _ = Describe("credential files", func() {
	var (
		e   *env
		m   *credmanager.Manager
		dir string
	)

	BeforeEach(func() {
		e = newEnv()
		m = e.manager()
		var err error
		dir, err = m.HostDir("guid-1")
		Expect(err).NotTo(HaveOccurred())
	})

	generations := func() []string {
		entries, err := os.ReadDir(dir)
		Expect(err).NotTo(HaveOccurred())
		var gens []string
		for _, en := range entries {
			if en.IsDir() {
				gens = append(gens, en.Name())
			}
		}
		return gens
	}

	It("lays the directory out like a projected volume, with a relative symlink for the bundle", func() {
		cred, err := m.Issue(e.logger, identity("guid-1"))
		Expect(err).NotTo(HaveOccurred())

		target, err := os.Readlink(filepath.Join(dir, "instance-bundle.pem"))
		Expect(err).NotTo(HaveOccurred())
		Expect(target).To(Equal("..data/instance-bundle.pem"))
		// instance.crt and instance.key are regular files, replaced by
		// rename on each rotation as Diego does (see the watcher spec).
		for _, name := range []string{"instance.crt", "instance.key"} {
			fi, err := os.Lstat(filepath.Join(dir, name))
			Expect(err).NotTo(HaveOccurred())
			Expect(fi.Mode().IsRegular()).To(BeTrue(), name)
		}
		c, k, err := credmanager.ReadPair(dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(c).To(Equal(cred.CertPEM))
		Expect(k).To(Equal(cred.KeyPEM))
		gen, err := os.Readlink(filepath.Join(dir, "..data"))
		Expect(err).NotTo(HaveOccurred())
		Expect(gen).To(HavePrefix("..2026_11_27_13_00_00."))
		Expect(generations()).To(Equal([]string{gen}))

		var meta credmanager.Credential
		b, err := os.ReadFile(filepath.Join(dir, "..data", "credential.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(json.Unmarshal(b, &meta)).To(Succeed())
		Expect(meta.Serial).To(Equal(cred.Serial))

		// The bundle is key then certificates, and tls.X509KeyPair takes it whole.
		bundle, err := os.ReadFile(filepath.Join(dir, "instance-bundle.pem"))
		Expect(err).NotTo(HaveOccurred())
		Expect(bundle).To(Equal(append(append([]byte{}, cred.KeyPEM...), cred.CertPEM...)))
		_, err = tls.X509KeyPair(bundle, bundle)
		Expect(err).NotTo(HaveOccurred())

		// After rotations the current generation and the one it replaced
		// are left (the latter for readers that resolved ..data just before).
		var prev string
		for i := 1; i <= 3; i++ {
			prev, err = os.Readlink(filepath.Join(dir, "..data"))
			Expect(err).NotTo(HaveOccurred())
			_, err = credmanager.Renew(m, e.logger, identity("guid-1"), i)
			Expect(err).NotTo(HaveOccurred())
		}
		gens := generations()
		Expect(gens).To(HaveLen(2))
		cur, err := os.Readlink(filepath.Join(dir, "..data"))
		Expect(err).NotTo(HaveOccurred())
		Expect(gens).To(ConsistOf(cur, prev))
		_, err = os.Lstat(filepath.Join(dir, "..data_tmp"))
		Expect(errors.Is(err, os.ErrNotExist)).To(BeTrue())
	})

	It("makes the key readable only by the given uid, the instance directories traversable and credentials/ root's", func() {
		id := identity("guid-1")
		_, err := m.Issue(e.logger, id)
		Expect(err).NotTo(HaveOccurred())

		for name, mode := range map[string]os.FileMode{"instance.key": 0o600, "instance-bundle.pem": 0o600, "instance.crt": 0o644} {
			fi, err := os.Stat(filepath.Join(dir, name))
			Expect(err).NotTo(HaveOccurred())
			Expect(fi.Mode().Perm()).To(Equal(mode), name)
			st := fi.Sys().(*syscall.Stat_t)
			Expect(int(st.Uid)).To(Equal(id.UID), name)
			Expect(int(st.Gid)).To(Equal(id.GID), name)
		}
		for _, d := range []string{dir, filepath.Join(dir, "..data")} {
			fi, err := os.Stat(d)
			Expect(err).NotTo(HaveOccurred())
			Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o755)), d)
		}
		fi, err := os.Stat(filepath.Dir(dir))
		Expect(err).NotTo(HaveOccurred())
		Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o700)), "credentials/ is root's alone")
	})

	It("sets directory modes whatever the umask", func() {
		old := syscall.Umask(0o077)
		defer syscall.Umask(old)
		_, err := m.Issue(e.logger, identity("guid-1"))
		Expect(err).NotTo(HaveOccurred())
		for d, mode := range map[string]os.FileMode{filepath.Dir(dir): 0o700, dir: 0o755, filepath.Join(dir, "..data"): 0o755} {
			fi, err := os.Stat(d)
			Expect(err).NotTo(HaveOccurred())
			Expect(fi.Mode().Perm()).To(Equal(mode), d)
		}
		fi, err := os.Stat(filepath.Join(dir, "instance.crt"))
		Expect(err).NotTo(HaveOccurred())
		Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o644)))
	})

	It("leaves the current pair alone when writing a new generation fails", func() {
		cred, err := m.Issue(e.logger, identity("guid-1"))
		Expect(err).NotTo(HaveOccurred())
		// A directory where the temporary ..data symlink goes makes the swap
		// fail after the new generation's files were written.
		Expect(os.MkdirAll(filepath.Join(dir, "..data_tmp", "x"), 0o755)).To(Succeed())
		_, err = credmanager.Renew(m, e.logger, identity("guid-1"), 1)
		Expect(err).To(HaveOccurred())
		Expect(os.RemoveAll(filepath.Join(dir, "..data_tmp"))).To(Succeed())

		certPEM, keyPEM, err := credmanager.ReadPair(dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(certPEM).To(Equal(cred.CertPEM))
		Expect(keyPEM).To(Equal(cred.KeyPEM))
		Expect(generations()).To(HaveLen(1), "the failed generation was cleaned up")
	})

	It("replaces instance.key, then instance.crt, by rename on every rotation, as a directory watcher sees it", func() {
		_, err := m.Issue(e.logger, identity("guid-1"))
		Expect(err).NotTo(HaveOccurred())
		w := watchDir(dir)

		for i := 1; i <= 5; i++ {
			cred, err := credmanager.Renew(m, e.logger, identity("guid-1"), i)
			Expect(err).NotTo(HaveOccurred())
			// What the Java buildpack's provider does: wait for an event
			// naming instance.crt, then read the key, then the certificate.
			moved := w.until("instance.crt")
			Expect(moved).To(Equal([]string{"..data", "instance.key", "instance.crt"}), "rotation %d: ..data swapped, then the key replaced, then the certificate", i)
			k, err := os.ReadFile(filepath.Join(dir, "instance.key"))
			Expect(err).NotTo(HaveOccurred())
			c, err := os.ReadFile(filepath.Join(dir, "instance.crt"))
			Expect(err).NotTo(HaveOccurred())
			Expect(pairMatches(c, k)).To(BeTrue(), "rotation %d", i)
			Expect(c).To(Equal(cred.CertPEM), "rotation %d: the new certificate", i)
		}
	})

	It("turns instance.crt and instance.key left as symlinks by an older agent into files", func() {
		_, err := m.Issue(e.logger, identity("guid-1"))
		Expect(err).NotTo(HaveOccurred())
		for _, name := range []string{"instance.crt", "instance.key"} {
			Expect(os.Remove(filepath.Join(dir, name))).To(Succeed())
			Expect(os.Symlink("..data/"+name, filepath.Join(dir, name))).To(Succeed())
		}
		cred, err := credmanager.Renew(m, e.logger, identity("guid-1"), 1)
		Expect(err).NotTo(HaveOccurred())
		for _, name := range []string{"instance.crt", "instance.key"} {
			fi, err := os.Lstat(filepath.Join(dir, name))
			Expect(err).NotTo(HaveOccurred())
			Expect(fi.Mode().IsRegular()).To(BeTrue(), name)
		}
		c, err := os.ReadFile(filepath.Join(dir, "instance.crt"))
		Expect(err).NotTo(HaveOccurred())
		Expect(c).To(Equal(cred.CertPEM))
	})

	Describe("atomic swaps", func() {
		const rotations = 300

		It("never shows a reader a mismatched pair through ReadPair or the bundle", func() {
			_, err := m.Issue(e.logger, identity("guid-1"))
			Expect(err).NotTo(HaveOccurred())

			var (
				stop                      atomic.Bool
				pairReads, bundleReads    atomic.Int64
				pairBad, bundleBad        atomic.Int64
				naiveReads, naiveMismatch atomic.Int64
				readErrs                  = make(chan error, 3)
				wg                        sync.WaitGroup
			)
			reader := func(read func() (bool, error), reads, bad *atomic.Int64) {
				defer GinkgoRecover()
				defer wg.Done()
				for !stop.Load() {
					ok, err := read()
					if err != nil {
						readErrs <- err
						return
					}
					reads.Add(1)
					if !ok {
						bad.Add(1)
					}
				}
			}
			wg.Add(3)
			go reader(func() (bool, error) {
				c, k, err := credmanager.ReadPair(dir)
				if err != nil {
					return false, err
				}
				return matchPair(c, k)
			}, &pairReads, &pairBad)
			go reader(func() (bool, error) {
				b, err := os.ReadFile(filepath.Join(dir, "instance-bundle.pem"))
				if errors.Is(err, os.ErrNotExist) {
					// Resolved ..data to a generation removed two rotations
					// later (back-to-back rotations here): not a mismatch; an
					// app reads again.
					return true, nil
				}
				if err != nil {
					return false, err
				}
				// the bundle is key then certificates
				_, certs := pem.Decode(b)
				return matchPair(certs, b[:len(b)-len(certs)])
			}, &bundleReads, &bundleBad)
			// The naive reader: two separate opens of the visible names. It
			// may also hit ENOENT when the generation it resolved is removed
			// between resolving and opening; that counts as a read, not an error.
			go reader(func() (bool, error) {
				c, err1 := os.ReadFile(filepath.Join(dir, "instance.crt"))
				k, err2 := os.ReadFile(filepath.Join(dir, "instance.key"))
				if errors.Is(err1, os.ErrNotExist) || errors.Is(err2, os.ErrNotExist) {
					return true, nil
				}
				if err := errors.Join(err1, err2); err != nil {
					return false, err
				}
				return matchPair(c, k)
			}, &naiveReads, &naiveMismatch)

			for i := 1; i <= rotations; i++ {
				_, err := credmanager.Renew(m, e.logger, identity("guid-1"), i)
				Expect(err).NotTo(HaveOccurred())
			}
			stop.Store(true)
			wg.Wait()
			close(readErrs)
			Expect(readErrs).NotTo(Receive(HaveOccurred()))

			Expect(pairReads.Load()).To(BeNumerically(">", rotations/10), "the reader ran during the rotations")
			Expect(bundleReads.Load()).To(BeNumerically(">", rotations/10))
			Expect(pairBad.Load()).To(BeZero())
			Expect(bundleBad.Load()).To(BeZero())
			// Not asserted either way: how often the naive reader straddles
			// depends on scheduling. The next spec shows that it can.
			fmt.Fprintf(GinkgoWriter, "ReadPair %d reads, bundle %d reads, naive %d reads of which %d mismatched\n",
				pairReads.Load(), bundleReads.Load(), naiveReads.Load(), naiveMismatch.Load())
		})

		It("can show a naive reader (instance.crt, then instance.key) a mismatched pair", func() {
			// Deterministic straddle: a rotation between the two opens. This
			// is why readers are told to use the bundle or ReadPair, or to
			// check the pair and read again.
			_, err := m.Issue(e.logger, identity("guid-1"))
			Expect(err).NotTo(HaveOccurred())
			c, err := os.ReadFile(filepath.Join(dir, "instance.crt"))
			Expect(err).NotTo(HaveOccurred())
			_, err = credmanager.Renew(m, e.logger, identity("guid-1"), 1)
			Expect(err).NotTo(HaveOccurred())
			k, err := os.ReadFile(filepath.Join(dir, "instance.key"))
			Expect(err).NotTo(HaveOccurred())
			Expect(pairMatches(c, k)).To(BeFalse())

			// A reader that opened ..data before a swap still reads one
			// generation: the replaced one is kept for one more rotation,
			// then its files are gone, never replaced.
			root, err := os.OpenRoot(filepath.Join(dir, "..data"))
			Expect(err).NotTo(HaveOccurred())
			defer root.Close()
			c1, err := root.ReadFile("instance.crt")
			Expect(err).NotTo(HaveOccurred())
			_, err = credmanager.Renew(m, e.logger, identity("guid-1"), 2)
			Expect(err).NotTo(HaveOccurred())
			k1, err := root.ReadFile("instance.key")
			Expect(err).NotTo(HaveOccurred(), "the replaced generation is still there")
			Expect(pairMatches(c1, k1)).To(BeTrue())
			_, err = credmanager.Renew(m, e.logger, identity("guid-1"), 3)
			Expect(err).NotTo(HaveOccurred())
			_, err = root.ReadFile("instance.key")
			Expect(errors.Is(err, os.ErrNotExist)).To(BeTrue(), "ENOENT two rotations later, so ReadPair starts again")
			c2, k2, err := credmanager.ReadPair(dir)
			Expect(err).NotTo(HaveOccurred())
			Expect(c2).NotTo(Equal(c1))
			Expect(pairMatches(c2, k2)).To(BeTrue())
		})
	})

	Describe("removal", func() {
		It("removes every generation and the directory, and tolerates a missing one", func() {
			_, err := m.Issue(e.logger, identity("guid-1"))
			Expect(err).NotTo(HaveOccurred())
			_, err = credmanager.Renew(m, e.logger, identity("guid-1"), 1)
			Expect(err).NotTo(HaveOccurred())
			Expect(m.Remove(e.logger, "guid-1")).To(Succeed())
			_, err = os.Lstat(dir)
			Expect(errors.Is(err, os.ErrNotExist)).To(BeTrue())
			Expect(m.Remove(e.logger, "guid-1")).To(Succeed())
		})

		It("removes orphans and keeps what it is told to keep", func() {
			for _, g := range []string{"keep-1", "orphan-1", "orphan-2"} {
				_, err := m.Issue(e.logger, identity(g))
				Expect(err).NotTo(HaveOccurred())
			}
			junk := filepath.Join(e.dataDir, "credentials", ".not-a-guid")
			Expect(os.WriteFile(junk, nil, 0o644)).To(Succeed())

			var asked []string
			Expect(m.RemoveOrphans(e.logger, func(guid string) bool {
				asked = append(asked, guid)
				return guid == "keep-1"
			})).To(Succeed())
			Expect(asked).To(ConsistOf("keep-1", "orphan-1", "orphan-2"))

			entries, err := os.ReadDir(filepath.Join(e.dataDir, "credentials"))
			Expect(err).NotTo(HaveOccurred())
			var names []string
			for _, en := range entries {
				names = append(names, en.Name())
			}
			Expect(names).To(ConsistOf("keep-1", ".not-a-guid"))
			c, k, err := credmanager.ReadPair(filepath.Join(e.dataDir, "credentials", "keep-1"))
			Expect(err).NotTo(HaveOccurred())
			Expect(pairMatches(c, k)).To(BeTrue())
		})

		It("is no error when nothing was ever issued", func() {
			Expect(m.RemoveOrphans(e.logger, func(string) bool { return false })).To(Succeed())
		})
	})

	Describe("guid validation", func() {
		DescribeTable("guids",
			func(guid string, valid bool) {
				err := credmanager.ValidateGUID(guid)
				if valid {
					Expect(err).NotTo(HaveOccurred())
					return
				}
				Expect(err).To(MatchError(credmanager.ErrInvalidGUID))
				_, err = m.HostDir(guid)
				Expect(err).To(MatchError(credmanager.ErrInvalidGUID))
				_, err = m.Issue(e.logger, identity(guid))
				Expect(err).To(MatchError(credmanager.ErrInvalidGUID))
				_, err = m.Adopt(e.logger, identity(guid))
				Expect(err).To(MatchError(credmanager.ErrInvalidGUID))
				Expect(m.Track(e.logger, identity(guid), credmanager.Credential{})).To(MatchError(credmanager.ErrInvalidGUID))
				Expect(m.Remove(e.logger, guid)).To(MatchError(credmanager.ErrInvalidGUID))
			},
			Entry("../etc", "../etc", false),
			Entry("..", "..", false),
			Entry("empty", "", false),
			Entry("a slash", "a/b", false),
			Entry("leading dot", ".hidden", false),
			Entry("leading dash", "-x", false),
			Entry("leading underscore", "_x", false),
			Entry("space", "a b", false),
			Entry("newline", "a\n", false),
			Entry("129 characters", strings.Repeat("a", 129), false),
			Entry("128 characters", strings.Repeat("a", 128), true),
			Entry("one character", "a", true),
			Entry("a typical guid", "6f1b8c6e-4b1d-4c5a-9f0e-2b7d3c1a9e55", true),
			Entry("underscores and capitals", "App_1-Z", true),
		)

		It("creates nothing outside the credentials directory for ../etc", func() {
			_, err := m.Issue(e.logger, identity("../etc"))
			Expect(err).To(HaveOccurred())
			_, err = os.Stat(filepath.Join(e.dataDir, "etc"))
			Expect(errors.Is(err, os.ErrNotExist)).To(BeTrue())
			_, err = os.Stat(filepath.Join(e.dataDir, "credentials"))
			Expect(errors.Is(err, os.ErrNotExist)).To(BeTrue())
		})
	})
})

// dirWatcher reports the names renamed into a directory (IN_MOVED_TO), as an
// inotify-based file watcher sees them.
type dirWatcher struct{ fd int }

func watchDir(dir string) *dirWatcher {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { unix.Close(fd) })
	_, err = unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO)
	Expect(err).NotTo(HaveOccurred())
	return &dirWatcher{fd: fd}
}

// until returns the names renamed into the directory up to and including
// the first one called name. It fails the spec when that does not happen
// within a generous bound (a missing event must not hang the suite).
func (w *dirWatcher) until(name string) []string {
	var names []string
	buf := make([]byte, 64*1024)
	for range 100 {
		fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if err == unix.EINTR || n == 0 {
			continue
		}
		Expect(err).NotTo(HaveOccurred())
		n, err = unix.Read(w.fd, buf)
		Expect(err).NotTo(HaveOccurred())
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			raw := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			off += unix.SizeofInotifyEvent + int(ev.Len)
			got := strings.TrimRight(string(raw), "\x00")
			names = append(names, got)
			if got == name {
				return names
			}
		}
	}
	Fail(fmt.Sprintf("no IN_MOVED_TO event for %s; saw %v", name, names))
	return nil
}
