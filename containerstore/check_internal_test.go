package containerstore

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/executor"
)

// Issue 13 item 11: the HTTP check was a blind SSRF from the host.
var _ = Describe("runCheck over HTTP", func() {
	var (
		elsewhere     *httptest.Server // what the app would like the host to reach
		elsewhereHits atomic.Int32
		askedClose    atomic.Bool      // a request said Connection: close
		app           *httptest.Server // the instance
		appIP         string
		appPort       uint16
	)
	BeforeEach(func() {
		elsewhereHits.Store(0)
		elsewhere = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhereHits.Add(1) }))
		DeferCleanup(elsewhere.Close)
		askedClose.Store(false)
		app = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Close {
				askedClose.Store(true)
			}
			if r.URL.Path == "/redirect" {
				http.Redirect(w, r, elsewhere.URL+"/x", http.StatusFound)
				return
			}
			w.WriteHeader(http.StatusOK)
		}))
		DeferCleanup(app.Close)
		host, port, _ := net.SplitHostPort(app.Listener.Addr().String())
		p, _ := strconv.Atoi(port)
		appIP, appPort = host, uint16(p)
	})
	check := func(path string) *executor.Check {
		return &executor.Check{HTTP: &executor.HTTPCheck{Port: appPort, Path: path}}
	}

	It("passes on a 2xx from the instance", func() {
		Expect(runCheck(context.Background(), appIP, check("/healthz?x=1"))).To(Succeed())
		Expect(runCheck(context.Background(), appIP, check(""))).To(Succeed())
	})

	It("asks no Connection: close, so the app's server does not close first and keep a TIME_WAIT on the app's port", func() {
		Expect(runCheck(context.Background(), appIP, check("/healthz"))).To(Succeed())
		Expect(askedClose.Load()).To(BeFalse())
	})

	It("does not follow a redirect: a 3xx fails the check and nothing else is dialled", func() {
		err := runCheck(context.Background(), appIP, check("/redirect"))
		Expect(err).To(MatchError(ContainSubstring("status 302")))
		Expect(elsewhereHits.Load()).To(BeZero())
	})

	It("refuses a path that would name another host and dials nothing", func() {
		_, port, _ := net.SplitHostPort(elsewhere.Listener.Addr().String())
		err := runCheck(context.Background(), appIP, check("@127.0.0.1:"+port+"/x"))
		Expect(err).To(MatchError(ContainSubstring("must start with a single /")))
		Expect(elsewhereHits.Load()).To(BeZero())
	})
})
