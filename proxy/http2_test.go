package proxy_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"

	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/tedsuo/ifrit"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cellagent/cellagent/proxy"
	"github.com/cellagent/cellagent/proxyconfig"
)

var _ = Describe("HTTP/2 (a route with protocol http2)", func() {
	var (
		ca    *testCA
		ports []uint16
		proc  ifrit.Process
	)

	BeforeEach(func() {
		// The app speaks HTTP/1.1 and cleartext HTTP/2 (h2c), as an app
		// behind Diego's Envoy with http2 routes does; one per listener.
		startApp := func() uint16 {
			ln, err := listenSafe()
			Expect(err).NotTo(HaveOccurred())
			var protos http.Protocols
			protos.SetHTTP1(true)
			protos.SetUnencryptedHTTP2(true)
			app := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "app saw %s", r.Proto)
			})}
			go func() { _ = app.Serve(ln) }()
			DeferCleanup(app.Close)
			return uint16(ln.Addr().(*net.TCPAddr).Port)
		}

		ca = newCA("identity-ca")
		server := ca.issue(instanceGUID, instanceGUID, "10.255.0.7")
		dir := GinkgoT().TempDir()
		ports = freePorts(3)
		mappings := []proxyconfig.Mapping{
			{AppPort: startApp(), ProxyPort: ports[0], HTTP2: true},
			{AppPort: startApp(), ProxyPort: ports[1]},
		}
		Expect(proxyconfig.Write(dir, proxyconfig.Config{ConfigDir: dir}, mappings, ports[2], server.certPEM, server.keyPEM, "1")).To(Succeed())
		p, err := proxy.New(lagertest.NewTestLogger("h2"), proxy.Config{BootstrapPath: dir + "/" + proxyconfig.BootstrapFile})
		Expect(err).NotTo(HaveOccurred())
		proc = ifrit.Invoke(p)
		DeferCleanup(func() {
			proc.Signal(syscall.SIGTERM)
			Eventually(proc.Wait(), ioTimeout).Should(Receive(BeNil()))
		})
	})

	get := func(port uint16) (*http.Response, string) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool(), ServerName: instanceGUID}, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: ioTimeout}
		resp, err := c.Get("https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))) + "/")
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		Expect(err).NotTo(HaveOccurred())
		return resp, string(b)
	}

	It("offers ALPN h2,http/1.1 and carries an h2 request end to end to an h2c app", func() {
		resp, body := get(ports[0])
		Expect(resp.Proto).To(Equal("HTTP/2.0"))
		Expect(resp.TLS.NegotiatedProtocol).To(Equal("h2"))
		Expect(body).To(Equal("app saw HTTP/2.0"))

		By("a client that offers only http/1.1 still gets it")
		c, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0]))),
			&tls.Config{RootCAs: ca.pool(), ServerName: instanceGUID, NextProtos: []string{"http/1.1"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(c.ConnectionState().NegotiatedProtocol).To(Equal("http/1.1"))
		Expect(c.Close()).To(Succeed())
	})

	It("offers no ALPN on a listener without an http2 route, so clients use HTTP/1.1", func() {
		resp, body := get(ports[1])
		Expect(resp.Proto).To(Equal("HTTP/1.1"))
		Expect(resp.TLS.NegotiatedProtocol).To(BeEmpty())
		Expect(body).To(Equal("app saw HTTP/1.1"))
	})
})
