package downloads_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/downloads"
	"github.com/cellagent/cellagent/executor"
)

func newCache(dir string, clk *fakeclock.FakeClock, maxBytes int64) *downloads.Cache {
	c, err := downloads.New(lagertest.NewTestLogger("cache"), downloads.Config{Dir: dir, MaxBytes: maxBytes, MaxArtifactBytes: 1 << 20, Clock: clk})
	Expect(err).NotTo(HaveOccurred())
	return c
}

func fetchBody(c *downloads.Cache, src downloads.Source) (string, bool) {
	a, err := c.Fetch(context.Background(), lagertest.NewTestLogger("t"), src)
	Expect(err).NotTo(HaveOccurred())
	defer a.Close()
	b, err := io.ReadAll(a)
	Expect(err).NotTo(HaveOccurred())
	return string(b), a.Cached
}

func extractAll(ctx context.Context, f *os.File, root *os.Root) (int64, error) {
	return downloads.Extract(ctx, f, root, nil, downloads.Limits{MaxBytes: 1 << 20, MaxEntries: 100})
}

var _ = Describe("Cache", func() {
	var (
		srv   *artifactServer
		dir   string
		clk   *fakeclock.FakeClock
		cache *downloads.Cache
	)

	BeforeEach(func() {
		srv = newArtifactServer()
		dir = GinkgoT().TempDir()
		clk = fakeclock.NewFakeClock(time.Unix(1_700_000_000, 0))
		cache = newCache(dir, clk, 1<<20)
	})

	It("refuses an artifact whose checksum is not the expected one, and caches nothing of it", func() {
		url := srv.put("/a.tgz", []byte("the real content"))
		src := downloads.Source{URL: url, CacheKey: "k", Checksum: executor.Checksum{Algorithm: "sha256", Value: sha256Hex([]byte("other"))}}
		_, err := cache.Fetch(context.Background(), lagertest.NewTestLogger("t"), src)
		Expect(err).To(MatchError(downloads.ErrChecksum))
		Expect(err.Error()).To(ContainSubstring("sha256 of " + url + " is " + sha256Hex([]byte("the real content"))))
		Expect(filepath.Join(dir, "entries")).To(BeADirectory())
		entries, _ := os.ReadDir(filepath.Join(dir, "entries"))
		Expect(entries).To(BeEmpty())
		tmp, _ := os.ReadDir(filepath.Join(dir, "tmp"))
		Expect(tmp).To(BeEmpty())
	})

	It("accepts sha1 and md5 checksums, in either case", func() {
		url := srv.put("/a.tgz", []byte("x"))
		for _, sum := range []executor.Checksum{{Algorithm: "sha1", Value: "11F6AD8EC52A2984ABAAFD7C3B516503785C2072"},
			{Algorithm: "md5", Value: "9dd4e461268c8034f5c8564e155c67a6"}} {
			body, _ := fetchBody(cache, downloads.Source{URL: url, Checksum: sum})
			Expect(body).To(Equal("x"))
		}
	})

	It("serves a cached artifact after the server answers 304 to its ETag, and downloads it again once it changed", func() {
		url := srv.put("/droplet.tgz", []byte("v0"))
		src := downloads.Source{URL: url, CacheKey: "droplets-app"}
		body, cached := fetchBody(cache, src)
		Expect(body).To(Equal("v0"))
		Expect(cached).To(BeFalse())

		body, cached = fetchBody(cache, src)
		Expect(srv.lastRequest().Get("If-None-Match")).To(Equal(`"v0"`))
		Expect(body).To(Equal("v0"))
		Expect(cached).To(BeTrue())
		Expect(srv.fullAnswers()).To(Equal(1))

		srv.put("/droplet.tgz", []byte("v1"))
		body, cached = fetchBody(cache, src)
		Expect(body).To(Equal("v1"))
		Expect(cached).To(BeFalse())
	})

	It("revalidates with If-Modified-Since when the server sends Last-Modified", func() {
		srv.lastMod = true
		url := srv.put("/a.tgz", []byte("v0"))
		src := downloads.Source{URL: url, CacheKey: "k"}
		fetchBody(cache, src)
		_, cached := fetchBody(cache, src)
		Expect(srv.lastRequest().Get("If-Modified-Since")).To(Equal("Mon, 01 Jan 2024 00:00:00 GMT"))
		Expect(cached).To(BeTrue())
	})

	It("downloads again when the cached copy does not match the checksum asked for", func() {
		url := srv.put("/a.tgz", []byte("v0"))
		fetchBody(cache, downloads.Source{URL: url, CacheKey: "k"})
		srv.put("/a.tgz", []byte("v1"))
		body, cached := fetchBody(cache, downloads.Source{URL: url, CacheKey: "k",
			Checksum: executor.Checksum{Algorithm: "sha256", Value: sha256Hex([]byte("v1"))}})
		Expect(srv.lastRequest().Get("If-None-Match")).To(BeEmpty())
		Expect(body).To(Equal("v1"))
		Expect(cached).To(BeFalse())
	})

	It("keeps its entries across a restart", func() {
		url := srv.put("/a.tgz", []byte("v0"))
		fetchBody(cache, downloads.Source{URL: url, CacheKey: "k"})
		_, cached := fetchBody(newCache(dir, clk, 1<<20), downloads.Source{URL: url, CacheKey: "k"})
		Expect(cached).To(BeTrue())
	})

	It("drops, on restart, an entry whose archive is not the one its record describes", func() {
		url := srv.put("/a.tgz", []byte("v0"))
		fetchBody(cache, downloads.Source{URL: url, CacheKey: "k"})
		archives, err := filepath.Glob(filepath.Join(dir, "entries", "*", "archive"))
		Expect(err).NotTo(HaveOccurred())
		Expect(archives).To(HaveLen(1))
		// As if killed between the new archive's rename and its meta.json.
		Expect(os.WriteFile(archives[0], []byte("newer bytes"), 0o600)).To(Succeed())
		body, cached := fetchBody(newCache(dir, clk, 1<<20), downloads.Source{URL: url, CacheKey: "k"})
		Expect(cached).To(BeFalse())
		Expect(body).To(Equal("v0"))
	})

	It("evicts the least recently used entry to stay under its bound, and does not cache what is larger than it", func() {
		cache = newCache(dir, clk, 10)
		a, b, c := srv.put("/a", []byte("aaaa")), srv.put("/b", []byte("bbbb")), srv.put("/c", []byte("cccc"))
		fetchBody(cache, downloads.Source{URL: a, CacheKey: "a"})
		clk.Increment(time.Second)
		fetchBody(cache, downloads.Source{URL: b, CacheKey: "b"})
		clk.Increment(time.Second)
		fetchBody(cache, downloads.Source{URL: a, CacheKey: "a"}) // a is now the more recent
		clk.Increment(time.Second)
		fetchBody(cache, downloads.Source{URL: c, CacheKey: "c"}) // 12 > 10: b goes
		_, cached := fetchBody(cache, downloads.Source{URL: a, CacheKey: "a"})
		Expect(cached).To(BeTrue())
		_, cached = fetchBody(cache, downloads.Source{URL: b, CacheKey: "b"})
		Expect(cached).To(BeFalse())

		big := srv.put("/big", []byte("0123456789abcdef"))
		body, _ := fetchBody(cache, downloads.Source{URL: big, CacheKey: "big"})
		Expect(body).To(Equal("0123456789abcdef"))
		_, cached = fetchBody(cache, downloads.Source{URL: big, CacheKey: "big"})
		Expect(cached).To(BeFalse())
	})

	Describe("trees (cached dependencies)", func() {
		It("extracts once, serves the tree to the next holder after a 304, and removes a replaced tree when its last holder releases it", func() {
			url := srv.put("/lifecycle.tgz", tgz(entry{Name: "launcher", Body: "v0", Mode: 0o755}))
			src := downloads.Source{URL: url, CacheKey: "lifecycle"}
			ctx, logger := context.Background(), lagertest.NewTestLogger("t")
			t1, size, err := cache.FetchTree(ctx, logger, "guid-1", src, extractAll)
			Expect(err).NotTo(HaveOccurred())
			Expect(size).To(BeNumerically(">", 0))
			Expect(os.ReadFile(filepath.Join(t1, "launcher"))).To(Equal([]byte("v0")))
			t2, size, err := cache.FetchTree(ctx, logger, "guid-2", src, extractAll)
			Expect(err).NotTo(HaveOccurred())
			Expect(t2).To(Equal(t1))
			Expect(size).To(BeZero())

			srv.put("/lifecycle.tgz", tgz(entry{Name: "launcher", Body: "v1", Mode: 0o755}))
			t3, _, err := cache.FetchTree(ctx, logger, "guid-3", src, extractAll)
			Expect(err).NotTo(HaveOccurred())
			Expect(t3).NotTo(Equal(t1))
			Expect(os.ReadFile(filepath.Join(t3, "launcher"))).To(Equal([]byte("v1")))

			// guid-1 and guid-2 still mount the old tree: it stays, across a restart too.
			Expect(cache.Release("guid-1")).To(Succeed())
			cache = newCache(dir, clk, 1<<20)
			Expect(filepath.Join(t1, "launcher")).To(BeARegularFile())
			Expect(cache.ReleaseUnless(func(h string) bool { return h == "guid-3" })).To(Succeed())
			Expect(t1).NotTo(BeADirectory())
			Expect(filepath.Join(t3, "launcher")).To(BeARegularFile())
			Expect(cache.Release("guid-3")).To(Succeed())
			Expect(cache.Release("guid-3")).To(Succeed())
			Expect(filepath.Join(t3, "launcher")).To(BeARegularFile()) // current: kept for the next container
		})

		It("never evicts a tree a container holds", func() {
			cache = newCache(dir, clk, 10)
			url := srv.put("/l.tgz", tgz(entry{Name: "f", Body: "12345678"}))
			tree, _, err := cache.FetchTree(context.Background(), lagertest.NewTestLogger("t"), "guid-1",
				downloads.Source{URL: url, CacheKey: "l"}, extractAll)
			Expect(err).NotTo(HaveOccurred())
			fetchBody(cache, downloads.Source{URL: srv.put("/a", []byte("aaaaaaaa")), CacheKey: "a"})
			Expect(filepath.Join(tree, "f")).To(BeARegularFile())
		})
	})
})
