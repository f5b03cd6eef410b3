package proxyhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// selfSigned is a CA-less server certificate for guid, and its PEM as the
// verifier's trust root.
func selfSigned(t *testing.T, guid string) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: guid}, DNSNames: []string{guid},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// serve accepts on 127.0.0.1 and hands each connection to handle.
func serve(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return l.Addr().String()
}

func TestProbe(t *testing.T) {
	cert, caPEM := selfSigned(t, "g1")
	v, err := newVerifier(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	hello, err := v.clientHello("g1")
	if err != nil {
		t.Fatal(err)
	}
	if len(hello) < 50 || hello[0] != 22 || hello[5] != 1 { // handshake record (22), ClientHello message
		t.Fatalf("not a ClientHello record: % x", hello[:min(len(hello), 8)])
	}
	if !strings.Contains(string(hello), "g1") {
		t.Error("the ClientHello does not name g1 (SNI)")
	}
	again, _ := v.clientHello("g1")
	if &again[0] != &hello[0] {
		t.Error("the ClientHello is made again instead of kept")
	}

	t.Run("a TLS server answers", func(t *testing.T) {
		addr := serve(t, func(c net.Conn) {
			defer c.Close()
			_ = tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}}).Handshake()
		})
		if err := v.probe(ctx, addr, "g1"); err != nil {
			t.Fatalf("probe of a TLS server: %v", err)
		}
	})

	t.Run("a server that accepts and closes does not (cellproxy whose app is down)", func(t *testing.T) {
		addr := serve(t, func(c net.Conn) { c.Close() })
		if err := v.probe(ctx, addr, "g1"); err == nil || !strings.Contains(err.Error(), "no answer to a ClientHello") {
			t.Fatalf("probe = %v, want no answer", err)
		}
	})

	t.Run("a server that answers something else than TLS does not", func(t *testing.T) {
		addr := serve(t, func(c net.Conn) {
			defer c.Close()
			_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
		})
		if err := v.probe(ctx, addr, "g1"); err == nil || !strings.Contains(err.Error(), "record of type") {
			t.Fatalf("probe = %v, want a wrong record type", err)
		}
	})

	t.Run("nothing listening", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := l.Addr().String()
		l.Close()
		if err := v.probe(ctx, addr, "g1"); err == nil {
			t.Fatal("probe of a closed port succeeded")
		}
	})

	v.forget("g1")
	if _, ok := v.hellos["g1"]; ok {
		t.Error("forget kept the ClientHello")
	}
}
