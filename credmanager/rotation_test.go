package credmanager_test

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/credmanager"
	"github.com/cellagent/cellagent/credmanager/credmanagerfakes"
)

// failingSigner fails while failures > 0, counting down.
type failingSigner struct {
	crypto.Signer
	failures *atomic.Int32
}

func (s failingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if s.failures.Add(-1) >= 0 {
		return nil, errors.New("hsm unavailable")
	}
	return s.Signer.Sign(r, digest, opts)
}

var _ = Describe("rotation", func() {
	var (
		e       *env
		m       *credmanager.Manager
		handler *credmanagerfakes.FakeHandler
		expiry  *credmanagerfakes.FakeExpiryHandler
	)

	BeforeEach(func() {
		e = newEnv()
		e.cfg.Validity = 10 * time.Hour
		handler = new(credmanagerfakes.FakeHandler)
		expiry = new(credmanagerfakes.FakeExpiryHandler)
	})

	JustBeforeEach(func() {
		// The handlers come with the configuration, as cmd/cellagent
		// gives them.
		e.cfg.Handlers = []credmanager.Handler{handler}
		e.cfg.ExpiryHandlers = []credmanager.ExpiryHandler{expiry}
		m = e.manager()
	})

	// armed waits until n rotation timers are armed: every loop whose timer
	// fired has finished its attempt (handlers included) and armed the next.
	armed := func(n int) {
		GinkgoHelper()
		Eventually(e.clock.WatcherCount).WithPolling(100 * time.Microsecond).Should(Equal(n))
	}
	// advanceTo moves the fake clock to t.
	advanceTo := func(t time.Time) { e.clock.Increment(t.Sub(e.clock.Now())) }
	bounds := func(cred credmanager.Credential) (time.Time, time.Time) {
		return credmanager.RotationPoint(cred, 0), credmanager.RotationPoint(cred, 1)
	}
	issueAndTrack := func(guid string) credmanager.Credential {
		GinkgoHelper()
		cred, err := m.Issue(e.logger, identity(guid))
		Expect(err).NotTo(HaveOccurred())
		Expect(m.Track(e.logger, identity(guid), cred)).To(Succeed())
		return cred
	}

	It("places the rotation point between 50% and 70% of the lifetime counted from issue", func() {
		cred := credmanager.Credential{NotBefore: epoch.Add(-credmanager.Backdate), NotAfter: epoch.Add(100 * time.Hour)}
		Expect(credmanager.RotationPoint(cred, 0)).To(Equal(epoch.Add(50 * time.Hour)))
		Expect(credmanager.RotationPoint(cred, 0.5)).To(Equal(epoch.Add(60 * time.Hour)))
		Expect(credmanager.RotationPoint(cred, 0.9999999)).To(BeTemporally("~", epoch.Add(70*time.Hour), time.Second))

		By("a 30s certificate (backdated 1m) rotates in the future, not at once")
		short := credmanager.Credential{NotBefore: epoch.Add(-credmanager.Backdate), NotAfter: epoch.Add(30 * time.Second)}
		Expect(credmanager.RotationPoint(short, 0)).To(Equal(epoch.Add(15 * time.Second)))

		By("a point within a second is rounded up to the whole second, so rotations due in one second fire together")
		odd := credmanager.Credential{NotBefore: epoch.Add(300*time.Millisecond - credmanager.Backdate), NotAfter: epoch.Add(300*time.Millisecond + 100*time.Hour)}
		Expect(credmanager.RotationPoint(odd, 0)).To(Equal(epoch.Add(50*time.Hour + time.Second)))
		other := credmanager.Credential{NotBefore: epoch.Add(900*time.Millisecond - credmanager.Backdate), NotAfter: epoch.Add(900*time.Millisecond + 100*time.Hour)}
		Expect(credmanager.RotationPoint(other, 0)).To(Equal(credmanager.RotationPoint(odd, 0)))

		By("unless the whole second is the expiry or after it")
		tiny := credmanager.Credential{NotBefore: epoch.Add(300*time.Millisecond - credmanager.Backdate), NotAfter: epoch.Add(time.Second)}
		Expect(credmanager.RotationPoint(tiny, 0)).To(Equal(epoch.Add(650 * time.Millisecond)))
	})

	It("backs off from 1s doubling to 1m", func() {
		var got []time.Duration
		b := credmanager.NewRetryBackoff(fakeclock.NewFakeClock(epoch))
		for range 9 {
			got = append(got, b.Next())
		}
		s := time.Second
		Expect(got).To(Equal([]time.Duration{s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s, 60 * s, 60 * s, 60 * s}))
	})

	It("rotates once within the jitter bounds, tells the handlers, and re-arms", func() {
		var observed atomic.Int32
		e.cfg.ObserveRotation = func(time.Duration) { observed.Add(1) }
		m = e.manager()
		cred := issueAndTrack("guid-1")
		run(m)
		armed(1)
		next := credmanager.NextRotation(m, "guid-1")
		lo, hi := bounds(cred)
		Expect(next).To(BeTemporally(">=", lo))
		Expect(next).To(BeTemporally("<=", hi))

		advanceTo(next.Add(-time.Nanosecond))
		Expect(e.clock.WatcherCount()).To(Equal(1), "not due yet")
		e.clock.Increment(time.Nanosecond)
		Eventually(handler.CredentialsRotatedCallCount).Should(Equal(1))
		armed(1)
		Expect(observed.Load()).To(Equal(int32(1)), "the rotation's duration goes to the observer")

		_, guid, rotated := handler.CredentialsRotatedArgsForCall(0)
		Expect(guid).To(Equal("guid-1"))
		Expect(rotated.Rotations).To(Equal(1))
		Expect(rotated.Serial).NotTo(Equal(cred.Serial))
		Expect(rotated.NotBefore).To(Equal(next.Add(-time.Minute).Truncate(time.Second)))
		Expect(rotated.NotAfter).To(Equal(next.Add(10 * time.Hour).Truncate(time.Second)))

		current, ok := m.Credential("guid-1")
		Expect(ok).To(BeTrue())
		Expect(current.Serial).To(Equal(rotated.Serial))
		dir, _ := m.HostDir("guid-1")
		c, k, err := credmanager.ReadPair(dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(c).To(Equal(rotated.CertPEM))
		Expect(k).To(Equal(rotated.KeyPEM))
		Expect(pairMatches(c, k)).To(BeTrue())

		next2 := credmanager.NextRotation(m, "guid-1")
		lo, hi = bounds(rotated)
		Expect(next2).To(BeTemporally(">=", lo))
		Expect(next2).To(BeTemporally("<=", hi))
		Expect(expiry.CredentialsExpiredCallCount()).To(BeZero())
	})

	It("spreads the rotations of instances issued together", func() {
		const n = 40
		creds := map[string]credmanager.Credential{}
		for i := range n {
			guid := fmt.Sprintf("guid-%d", i)
			creds[guid] = issueAndTrack(guid)
		}
		run(m)
		armed(n)

		var earliest, latest time.Time
		distinct := map[time.Time]bool{}
		for guid, cred := range creds {
			next := credmanager.NextRotation(m, guid)
			lo, hi := bounds(cred)
			Expect(next).To(BeTemporally(">=", lo), guid)
			Expect(next).To(BeTemporally("<=", hi), guid)
			distinct[next] = true
			if earliest.IsZero() || next.Before(earliest) {
				earliest = next
			}
			if next.After(latest) {
				latest = next
			}
		}
		life := 10*time.Hour + time.Minute
		Expect(len(distinct)).To(BeNumerically(">=", n-2), "not all equal")
		// 40 uniform draws over 20% of the lifetime all landing within 10%
		// of it has probability below 1e-9.
		Expect(latest.Sub(earliest)).To(BeNumerically(">", life/10))

		// By 70% of the lifetime every instance rotated, exactly once.
		advanceTo(latest)
		Eventually(handler.CredentialsRotatedCallCount).Should(Equal(n))
		armed(n)
		rotated := map[string]int{}
		for i := range n {
			_, guid, cred := handler.CredentialsRotatedArgsForCall(i)
			rotated[guid] = cred.Rotations
		}
		Expect(rotated).To(HaveLen(n))
		for _, r := range rotated {
			Expect(r).To(Equal(1))
		}
	})

	Describe("failures", func() {
		BeforeEach(func() {
			e.cfg.Validity = 10 * time.Minute // rotation 5m after issue with jitter 0
		})
		JustBeforeEach(func() {
			credmanager.SetJitter(m, func() float64 { return 0 })
		})

		// step fires the armed timer and waits for the attempt to finish: the
		// next timer armed, or the loop ended (expiry).
		step := func() time.Time {
			GinkgoHelper()
			at := credmanager.NextRotation(m, "guid-1")
			advanceTo(at)
			Eventually(func() bool {
				return e.clock.WatcherCount() == 1 || expiry.CredentialsExpiredCallCount() > 0
			}).WithPolling(100 * time.Microsecond).Should(BeTrue())
			return at
		}

		It("retries a failing handler with backoff and reports expiry only at the deadline", func() {
			errA, errB := errors.New("sds write failed"), errors.New("event stream closed")
			second := new(credmanagerfakes.FakeHandler)
			third := new(credmanagerfakes.FakeHandler)
			handler.CredentialsRotatedReturns(errA) // the first handler fails
			third.CredentialsRotatedReturns(errB)
			e.cfg.Handlers = []credmanager.Handler{handler, second, third}
			m = e.manager()
			credmanager.SetJitter(m, func() float64 { return 0 })

			first := issueAndTrack("guid-1")
			run(m)
			armed(1)
			Expect(credmanager.NextRotation(m, "guid-1")).To(Equal(first.NotBefore.Add(credmanager.Backdate + 5*time.Minute)))

			// Expected attempt times: the rotation point, then 1s doubling to
			// 1m, the last one clipped to the first certificate's expiry.
			var want []time.Time
			at, backoff := credmanager.RotationPoint(first, 0), time.Second
			for at.Before(first.NotAfter) {
				want = append(want, at)
				at = at.Add(backoff)
				backoff = min(2*backoff, time.Minute)
			}
			want = append(want, first.NotAfter)

			var got []time.Time
			for len(got) < 100 && expiry.CredentialsExpiredCallCount() == 0 {
				got = append(got, step())
			}
			Expect(got).To(Equal(want))
			Expect(len(want)).To(Equal(11), "5:00 after issue, +1,2,4,8,16,32,60,60,60 s, then the deadline")

			// Every handler was called on every attempt, although the first fails.
			Expect(second.CredentialsRotatedCallCount()).To(Equal(len(want)))
			Expect(third.CredentialsRotatedCallCount()).To(Equal(len(want)))

			Expect(expiry.CredentialsExpiredCallCount()).To(Equal(1))
			_, guid, expired, err := expiry.CredentialsExpiredArgsForCall(0)
			Expect(guid).To(Equal("guid-1"))
			Expect(expired.Serial).To(Equal(first.Serial), "the certificate the proxy still serves")
			Expect(err).To(MatchError(errA))
			Expect(err).To(MatchError(errB))

			// Each attempt wrote a new generation; nothing is tracked any more.
			_, _, last := second.CredentialsRotatedArgsForCall(len(want) - 1)
			Expect(last.Rotations).To(Equal(len(want)))
			_, tracked := m.Credential("guid-1")
			Expect(tracked).To(BeFalse())
			Expect(e.clock.WatcherCount()).To(BeZero())
			Expect(e.logger.LogMessages()).To(ContainElement("test.credmanager.rotate.rotation-failed"))
			Expect(e.logger.LogMessages()).To(ContainElement("test.credmanager.rotate.expired"))
		})

		It("retries when issuing fails, then starts over from the new certificate", func() {
			var failures atomic.Int32
			credmanager.WrapSigner(m, func(s crypto.Signer) crypto.Signer { return failingSigner{s, &failures} })
			first := issueAndTrack("guid-1")
			run(m)
			armed(1)

			failures.Store(3)
			t0 := step()
			Expect(step().Sub(t0)).To(Equal(1 * time.Second))
			Expect(step().Sub(t0)).To(Equal(3 * time.Second))
			Expect(step().Sub(t0)).To(Equal(7 * time.Second))
			Expect(handler.CredentialsRotatedCallCount()).To(Equal(1), "handlers hear of successes only")
			_, _, second := handler.CredentialsRotatedArgsForCall(0)
			Expect(second.Rotations).To(Equal(1))
			Expect(second.NotBefore).To(Equal(t0.Add(7*time.Second - time.Minute)))
			Expect(credmanager.NextRotation(m, "guid-1")).To(Equal(credmanager.RotationPoint(second, 0)))
			Expect(e.logger.LogMessages()).To(ContainElement("test.credmanager.rotate.rotation-failed"))

			// The backoff starts again at 1s after a success.
			failures.Store(1)
			t1 := step()
			Expect(step().Sub(t1)).To(Equal(time.Second))
			Expect(handler.CredentialsRotatedCallCount()).To(Equal(2))
			Expect(expiry.CredentialsExpiredCallCount()).To(BeZero())
			Expect(first.Serial).NotTo(BeEmpty())
		})

		It("calls every handler when the first fails and joins their errors", func() {
			errA, errB := errors.New("a"), errors.New("b")
			h1, h2, h3 := new(credmanagerfakes.FakeHandler), new(credmanagerfakes.FakeHandler), new(credmanagerfakes.FakeHandler)
			h1.CredentialsRotatedReturns(errA)
			h3.CredentialsRotatedReturns(errB)
			e.cfg.Handlers = []credmanager.Handler{h1, h2, h3}
			m2 := e.manager()
			err := credmanager.Notify(m2, e.logger, "guid-1", credmanager.Credential{Serial: "1"})
			Expect(err).To(MatchError(errA))
			Expect(err).To(MatchError(errB))
			for _, h := range []*credmanagerfakes.FakeHandler{h1, h2, h3} {
				Expect(h.CredentialsRotatedCallCount()).To(Equal(1))
				_, guid, cred := h.CredentialsRotatedArgsForCall(0)
				Expect(guid).To(Equal("guid-1"))
				Expect(cred.Serial).To(Equal("1"))
			}
			Expect(credmanager.Notify(m2, e.logger, "guid-1", credmanager.Credential{})).To(MatchError(errA))
		})
	})

	Describe("lifecycle", func() {
		It("starts entries tracked before Run and stops timers on Untrack", func() {
			issueAndTrack("guid-1")
			issueAndTrack("guid-2")
			Expect(e.clock.WatcherCount()).To(BeZero(), "nothing runs before Run")
			run(m)
			armed(2)
			m.Untrack("guid-1")
			Expect(e.clock.WatcherCount()).To(Equal(1))
			_, ok := m.Credential("guid-1")
			Expect(ok).To(BeFalse())
			e.clock.Increment(10 * time.Hour)
			Eventually(handler.CredentialsRotatedCallCount).Should(Equal(1))
			_, guid, _ := handler.CredentialsRotatedArgsForCall(0)
			Expect(guid).To(Equal("guid-2"))
			m.Untrack("nope") // no-op
		})

		It("refuses to Issue over a tracked guid", func() {
			issueAndTrack("guid-1")
			_, err := m.Issue(e.logger, identity("guid-1"))
			Expect(err).To(MatchError(credmanager.ErrTracked))
		})

		It("refuses a credential without a lifetime", func() {
			Expect(m.Track(e.logger, identity("guid-1"), credmanager.Credential{})).To(MatchError(ContainSubstring("no lifetime")))
		})

		It("lets Remove wait for a rotation in flight before deleting the files", func() {
			entered, release := make(chan struct{}), make(chan struct{})
			handler.CredentialsRotatedStub = func(lager.Logger, string, credmanager.Credential) error {
				close(entered)
				<-release
				return nil
			}
			issueAndTrack("guid-1")
			run(m)
			armed(1)
			advanceTo(credmanager.NextRotation(m, "guid-1"))
			Eventually(entered).Should(BeClosed())

			removed := make(chan error, 1)
			go func() { removed <- m.Remove(e.logger, "guid-1") }()
			Consistently(removed, 50*time.Millisecond).ShouldNot(Receive())
			dir, _ := m.HostDir("guid-1")
			Expect(filepath.Join(dir, "instance.crt")).To(BeAnExistingFile())

			close(release)
			Eventually(removed).Should(Receive(BeNil()))
			_, err := os.Lstat(dir)
			Expect(errors.Is(err, os.ErrNotExist)).To(BeTrue())
			Expect(e.clock.WatcherCount()).To(BeZero(), "no timer re-armed after Remove")
		})

		It("finishes a rotation in flight before Run returns", func() {
			entered, release := make(chan struct{}), make(chan struct{})
			handler.CredentialsRotatedStub = func(lager.Logger, string, credmanager.Credential) error {
				close(entered)
				<-release
				return nil
			}
			issueAndTrack("guid-1")
			p := run(m)
			armed(1)
			advanceTo(credmanager.NextRotation(m, "guid-1"))
			Eventually(entered).Should(BeClosed())
			p.Signal(os.Interrupt)
			Consistently(p.Wait(), 50*time.Millisecond).ShouldNot(Receive())
			close(release)
			Eventually(p.Wait()).Should(Receive(BeNil()))
			// (run's cleanup waits on the same process; it has exited)
		})

		It("refuses a second Run", func() {
			run(m)
			Expect(m.Run(make(chan os.Signal), make(chan struct{}))).To(MatchError(ContainSubstring("twice")))
		})
	})

	Describe("Adopt after an agent restart", func() {
		restart := func() *credmanager.Manager {
			return e.manager() // the same handlers, from the configuration
		}

		It("reloads serial, expiry and rotation count and schedules from them", func() {
			issueAndTrack("guid-1")
			cred, err := credmanager.Renew(m, e.logger, identity("guid-1"), 3)
			Expect(err).NotTo(HaveOccurred())
			e.clock.Increment(time.Hour)

			m2 := restart()
			adopted, err := m2.Adopt(e.logger, identity("guid-1"))
			Expect(err).NotTo(HaveOccurred())
			Expect(adopted.Serial).To(Equal(cred.Serial))
			Expect(adopted.NotBefore).To(Equal(cred.NotBefore))
			Expect(adopted.NotAfter).To(Equal(cred.NotAfter))
			Expect(adopted.Rotations).To(Equal(3))
			Expect(adopted.CertPEM).To(Equal(cred.CertPEM))
			Expect(adopted.KeyPEM).To(Equal(cred.KeyPEM))

			run(m2)
			armed(1)
			lo, hi := bounds(cred)
			next := credmanager.NextRotation(m2, "guid-1")
			Expect(next).To(BeTemporally(">=", lo))
			Expect(next).To(BeTemporally("<=", hi))
			advanceTo(next)
			Eventually(handler.CredentialsRotatedCallCount).Should(Equal(1))
			_, _, rotated := handler.CredentialsRotatedArgsForCall(0)
			Expect(rotated.Rotations).To(Equal(4))
		})

		It("rotates at once when the rotation point has passed", func() {
			issueAndTrack("guid-1")
			e.clock.Increment(8 * time.Hour) // 80% of the lifetime
			m2 := restart()
			run(m2)
			_, err := m2.Adopt(e.logger, identity("guid-1"))
			Expect(err).NotTo(HaveOccurred())
			Eventually(handler.CredentialsRotatedCallCount).Should(Equal(1))
		})

		It("rotates at once when another CA signed the certificate", func() {
			issueAndTrack("guid-1")
			other := makeCA(testCA{})
			e.cfg.CACertFile, e.cfg.CAKeyFile = writeCA(GinkgoT().TempDir(), other.certPEM, other.keyPEM)
			m2 := restart()
			run(m2)
			_, err := m2.Adopt(e.logger, identity("guid-1"))
			Expect(err).NotTo(HaveOccurred())
			Eventually(handler.CredentialsRotatedCallCount).Should(Equal(1))
			_, _, rotated := handler.CredentialsRotatedArgsForCall(0)
			Expect(parseCerts(rotated.CertPEM)[0].CheckSignatureFrom(other.cert)).To(Succeed())
		})

		It("reports an expired certificate whose immediate rotation fails", func() {
			issueAndTrack("guid-1")
			e.clock.Increment(11 * time.Hour)
			m2 := restart()
			var failures atomic.Int32
			failures.Store(1)
			credmanager.WrapSigner(m2, func(s crypto.Signer) crypto.Signer { return failingSigner{s, &failures} })
			run(m2)
			_, err := m2.Adopt(e.logger, identity("guid-1"))
			Expect(err).NotTo(HaveOccurred())
			Eventually(expiry.CredentialsExpiredCallCount).Should(Equal(1))
			_, _, _, err = expiry.CredentialsExpiredArgsForCall(0)
			Expect(err).To(MatchError(ContainSubstring("hsm unavailable")))
		})

		It("fails for a missing directory, a mismatched pair or another guid's certificate", func() {
			_, err := m.Adopt(e.logger, identity("guid-1"))
			Expect(err).To(MatchError(os.ErrNotExist))

			_, err = m.Issue(e.logger, identity("guid-1"))
			Expect(err).NotTo(HaveOccurred())
			other, err := credmanager.IssueInMemory(m, identity("guid-1"))
			Expect(err).NotTo(HaveOccurred())
			dir, _ := m.HostDir("guid-1")
			Expect(os.WriteFile(filepath.Join(dir, "..data", "instance.key"), other.KeyPEM, 0o600)).To(Succeed())
			_, err = m.Adopt(e.logger, identity("guid-1"))
			Expect(err).To(MatchError(ContainSubstring("instance.key does not match instance.crt")))

			_, err = m.Issue(e.logger, identity("guid-2"))
			Expect(err).NotTo(HaveOccurred())
			dir2, _ := m.HostDir("guid-2")
			Expect(os.Rename(dir2, dir+"-x")).To(Succeed())
			Expect(os.RemoveAll(dir)).To(Succeed())
			Expect(os.Rename(dir+"-x", dir)).To(Succeed())
			_, err = m.Adopt(e.logger, identity("guid-1"))
			Expect(err).To(MatchError(ContainSubstring(`holds a certificate for "guid-2"`)))
			_, ok := m.Credential("guid-1")
			Expect(ok).To(BeFalse())
		})
	})
})
