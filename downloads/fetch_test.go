package downloads_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/downloads"
	"github.com/cellagent/cellagent/executor"
)

var _ = Describe("fetching", func() {
	var (
		clk   *fakeclock.FakeClock
		cache *downloads.Cache
	)

	BeforeEach(func() {
		clk = fakeclock.NewFakeClock(time.Unix(1_700_000_000, 0))
		cache = newCache(GinkgoT().TempDir(), clk, 1<<20)
	})

	serve := func(h http.HandlerFunc) string {
		srv := httptest.NewServer(h)
		DeferCleanup(srv.Close)
		return srv.URL
	}

	It("names neither the request's signature nor the presigned URL it was redirected to in a failure", func() {
		url := serve(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://127.0.0.1:1/bucket/droplet?X-Amz-Signature=REDIRECTSECRET", http.StatusFound)
		})
		_, err := cache.Fetch(context.Background(), lagertest.NewTestLogger("t"),
			downloads.Source{URL: url + "/droplet?signature=QUERYSECRET"})
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(HavePrefix("GET " + url + "/droplet: "))
		Expect(err.Error()).NotTo(ContainSubstring("SECRET"))
		Expect(err.Error()).NotTo(ContainSubstring("bucket"))
	})

	It("fails a download whose server sends no byte for the idle timeout", func() {
		url := serve(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		})
		done := make(chan error, 1)
		go func() {
			_, err := cache.Fetch(context.Background(), lagertest.NewTestLogger("t"), downloads.Source{URL: url + "/a", CacheKey: "k"})
			done <- err
		}()
		Eventually(clk.WatcherCount).Should(Equal(1))
		Consistently(done).ShouldNot(Receive())
		clk.Increment(downloads.DefaultIdleTimeout)
		var err error
		Eventually(done).Should(Receive(&err))
		Expect(err).To(MatchError(ContainSubstring("no data received for 1m0s")))
	})

	It("keeps a body stored with Content-Encoding: gzip as it is (its checksum is of those bytes)", func() {
		archive := tgz(entry{Name: "f", Body: "x"})
		url := serve(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(archive)
		})
		a, err := cache.Fetch(context.Background(), lagertest.NewTestLogger("t"), downloads.Source{URL: url + "/a",
			Checksum: executor.Checksum{Algorithm: "sha256", Value: sha256Hex(archive)}})
		Expect(err).NotTo(HaveOccurred())
		defer a.Close()
		Expect(io.ReadAll(a)).To(Equal(archive))
	})
})

var _ = DescribeTable("executor.RedactURL",
	func(raw, want string) { Expect(executor.RedactURL(raw)).To(Equal(want)) },
	Entry("query", "https://b.example/o?sig=s", "https://b.example/o"),
	Entry("user info", "https://u:p@b.example/o#f", "https://b.example/o"),
	Entry("no scheme", "b.example/o?x", "b.example/o"),
)
