package bbs_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/cellagent/cellagent/rep/bbs"
	"github.com/cellagent/cellagent/rep/models"
	"github.com/cellagent/cellagent/rep/mtls"
)

// pki writes a CA and a leaf certificate (server and client use) for
// 127.0.0.1 into dir.
func pki(dir string) mtls.Files {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	Expect(err).NotTo(HaveOccurred())
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "cell"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	Expect(err).NotTo(HaveOccurred())
	keyDER, _ := x509.MarshalECPrivateKey(key)
	f := mtls.Files{CACert: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "cell.crt"), Key: filepath.Join(dir, "cell.key")}
	Expect(os.WriteFile(f.CACert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)).To(Succeed())
	Expect(os.WriteFile(f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)).To(Succeed())
	Expect(os.WriteFile(f.Key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)).To(Succeed())
	return f
}

var _ = Describe("Client", func() {
	var (
		files   mtls.Files
		server  *httptest.Server
		handler http.HandlerFunc
		client  *bbs.Client
	)

	BeforeEach(func() {
		files = pki(GinkgoT().TempDir())
		server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler(w, r) }))
		tc, err := mtls.Server(files)
		Expect(err).NotTo(HaveOccurred())
		server.TLS = tc
		server.StartTLS()
		DeferCleanup(server.Close)
		client, err = bbs.New(bbs.Config{URL: server.URL, TLS: files})
		Expect(err).NotTo(HaveOccurred())
	})

	answer := func(w http.ResponseWriter, m proto.Message) {
		b, err := proto.Marshal(m)
		Expect(err).NotTo(HaveOccurred())
		w.Write(b)
	}

	It("posts protobuf to BBS's route and succeeds on an answer without error", func() {
		var got models.ClaimActualLRPRequest
		handler = func(w http.ResponseWriter, r *http.Request) {
			defer GinkgoRecover()
			Expect(r.Method).To(Equal(http.MethodPost))
			Expect(r.URL.Path).To(Equal("/v1/actual_lrps/claim"))
			Expect(r.Header.Get("Content-Type")).To(Equal("application/x-protobuf"))
			b, _ := io.ReadAll(r.Body)
			Expect(proto.Unmarshal(b, &got)).To(Succeed())
			answer(w, &models.ActualLRPLifecycleResponse{})
		}
		Expect(client.Claim(context.Background(), &models.ActualLRPKey{ProcessGuid: "pg", Index: 2},
			&models.ActualLRPInstanceKey{InstanceGuid: "ig", CellId: "c"})).To(Succeed())
		Expect(got.GetProcessGuid()).To(Equal("pg"))
		Expect(got.GetIndex()).To(BeEquivalentTo(2))
		Expect(got.GetActualLrpInstanceKey().GetInstanceGuid()).To(Equal("ig"))
	})

	It("answers the error BBS put in the response as a typed error", func() {
		handler = func(w http.ResponseWriter, r *http.Request) {
			answer(w, &models.ActualLRPLifecycleResponse{Error: &models.Error{Type: models.Error_ActualLRPCannotBeClaimed, Message: "taken"}})
		}
		err := client.Claim(context.Background(), &models.ActualLRPKey{ProcessGuid: "pg"}, &models.ActualLRPInstanceKey{})
		Expect(bbs.IsType(err, models.Error_ActualLRPCannotBeClaimed)).To(BeTrue())
		Expect(err).To(MatchError(ContainSubstring("taken")))
	})

	It("keeps fields of a desired LRP it does not declare as unknown fields", func() {
		handler = func(w http.ResponseWriter, r *http.Request) {
			// Wrap a desired LRP carrying sidecars (field 36, not declared)
			// and egress_rules (field 20, declared) as BBS sends it.
			inner, _ := proto.Marshal(&models.DesiredLRP{ProcessGuid: "pg", Instances: 3})
			inner = protowire.AppendTag(inner, 36, protowire.BytesType)
			inner = protowire.AppendBytes(inner, []byte{0x0a, 0x03, 'r', 'u', 'n'})
			inner = protowire.AppendTag(inner, 20, protowire.BytesType)
			inner = protowire.AppendBytes(inner, []byte{0x0a, 0x03, 't', 'c', 'p'})
			b := protowire.AppendTag(nil, 2, protowire.BytesType) // DesiredLRPResponse.desired_lrp
			b = protowire.AppendBytes(b, inner)
			w.Write(b)
		}
		d, err := client.DesiredLRP(context.Background(), "pg")
		Expect(err).NotTo(HaveOccurred())
		Expect(d.GetInstances()).To(BeEquivalentTo(3))
		Expect(d.ProtoReflect().GetUnknown()).NotTo(BeEmpty())
		Expect(d.GetEgressRules()).To(HaveLen(1))
		Expect(d.GetEgressRules()[0].GetProtocol()).To(Equal("tcp"))
	})

	It("tells whether BBS answered the last call, and each call's outcome to Observe", func() {
		var seen []string
		observed, err := bbs.New(bbs.Config{URL: server.URL, TLS: files, Observe: func(route string, err error) {
			seen = append(seen, fmt.Sprintf("%s %v", route, err != nil))
		}})
		Expect(err).NotTo(HaveOccurred())
		handler = func(w http.ResponseWriter, r *http.Request) {
			answer(w, &models.ActualLRPLifecycleResponse{Error: &models.Error{Type: models.Error_ActualLRPCannotBeClaimed, Message: "taken"}})
		}
		Expect(observed.Claim(context.Background(), &models.ActualLRPKey{}, &models.ActualLRPInstanceKey{})).NotTo(Succeed())
		ok, last := observed.Reachable()
		Expect(ok).To(BeTrue()) // an error BBS answered: BBS is there
		Expect(last).To(ContainSubstring("taken"))
		handler = func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusBadGateway) }
		_, err = observed.ActualLRPs(context.Background(), "c")
		Expect(err).To(HaveOccurred())
		ok, last = observed.Reachable()
		Expect(ok).To(BeFalse())
		Expect(last).To(ContainSubstring("http 502"))
		Expect(seen).To(Equal([]string{"/v1/actual_lrps/claim true", "/v1/actual_lrps/list true"}))
	})

	It("answers a clear error for HTTP failures", func() {
		handler = func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) }
		_, err := client.ActualLRPs(context.Background(), "cell-1")
		Expect(err).To(MatchError(ContainSubstring("http 500")))
	})

	It("cannot reach a server that requires a client certificate without one", func() {
		pool := x509.NewCertPool()
		b, _ := os.ReadFile(files.CACert)
		pool.AppendCertsFromPEM(b)
		plain := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		_, err := plain.Post(server.URL+"/v1/actual_lrps/list", "application/x-protobuf", nil)
		Expect(err).To(HaveOccurred())
	})

	It("refuses a plain http BBS URL", func() {
		_, err := bbs.New(bbs.Config{URL: "http://127.0.0.1:1", TLS: files})
		Expect(err).To(MatchError(ContainSubstring("https")))
	})

	It("streams desired_lrp_changed events for the cell, skipping other events, until the stream ends", func() {
		var sub models.EventsByCellId
		handler = func(w http.ResponseWriter, r *http.Request) {
			defer GinkgoRecover()
			Expect(r.URL.Path).To(Equal("/v1/events/lrp_instances.r1"))
			b, _ := io.ReadAll(r.Body)
			Expect(proto.Unmarshal(b, &sub)).To(Succeed())
			w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
			ev := func(id int, name string, m proto.Message) {
				raw, err := proto.Marshal(m)
				Expect(err).NotTo(HaveOccurred())
				fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", id, name, base64.StdEncoding.EncodeToString(raw))
			}
			ev(0, "actual_lrp_instance_changed", &models.ActualLRP{})
			ev(1, "desired_lrp_changed", &models.DesiredLRPChangedEvent{After: &models.DesiredLRP{ProcessGuid: "pg", Instances: 2}})
		}
		var got []*models.DesiredLRPChangedEvent
		connected := 0
		err := client.DesiredLRPChanges(context.Background(), "cell-1", func() { connected++ },
			func(e *models.DesiredLRPChangedEvent) { got = append(got, e) })
		Expect(err).To(MatchError(io.EOF))
		Expect(sub.GetCellId()).To(Equal("cell-1"))
		Expect(connected).To(Equal(1))
		Expect(got).To(HaveLen(1))
		Expect(got[0].GetAfter().GetProcessGuid()).To(Equal("pg"))
	})

	It("ends the event stream with the reason on a payload it cannot decode", func() {
		handler = func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "event: desired_lrp_changed\ndata: !!notbase64\n\n")
		}
		err := client.DesiredLRPChanges(context.Background(), "cell-1", nil, func(*models.DesiredLRPChangedEvent) {
			Fail("no event expected")
		})
		Expect(err).To(MatchError(ContainSubstring("event desired_lrp_changed")))
	})

	It("answers keep_container from the evacuation calls", func() {
		handler = func(w http.ResponseWriter, r *http.Request) {
			defer GinkgoRecover()
			Expect(r.URL.Path).To(Equal("/v1/actual_lrps/evacuate_running.r1"))
			b, _ := io.ReadAll(r.Body)
			var req models.EvacuateRunningActualLRPRequest
			Expect(proto.Unmarshal(b, &req)).To(Succeed())
			Expect(req.GetActualLrpNetInfo().GetAddress()).To(Equal("10.0.0.1"))
			Expect(req.GetRoutable()).To(BeTrue())
			answer(w, &models.EvacuationResponse{KeepContainer: true})
		}
		keep, err := client.EvacuateRunning(context.Background(), bbs.Start{Key: &models.ActualLRPKey{ProcessGuid: "pg"},
			Instance: &models.ActualLRPInstanceKey{InstanceGuid: "ig"}, Net: &models.ActualLRPNetInfo{Address: "10.0.0.1"}, Routable: true})
		Expect(err).NotTo(HaveOccurred())
		Expect(keep).To(BeTrue())
	})
})
