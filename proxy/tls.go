package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// secretSource is one SDS file and what was last loaded from it. The
// pointers are read by handshakes and /certs; stamp is guarded by
// Proxy.reloadMu (New sets it before anything else runs).
type secretSource struct {
	ref        SecretRef
	validation bool
	cert       atomic.Pointer[certSecret]
	val        atomic.Pointer[validationSecret]
	stamp      fileStamp // guarded by Proxy.reloadMu
}

// fileStamp changes when the file is replaced (inode) or rewritten in place.
type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
	missing      bool
}

func statFile(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{missing: true}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStamp{size: fi.Size(), mtime: syscall.NsecToTimespec(fi.ModTime().UnixNano())}
	}
	return fileStamp{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// load reads the file and, when it is good, publishes its content.
func (s *secretSource) load() error {
	if s.validation {
		v, err := loadValidationSecret(s.ref)
		if err != nil {
			return err
		}
		s.val.Store(v)
		return nil
	}
	c, err := loadCertSecret(s.ref)
	if err != nil {
		return err
	}
	s.cert.Store(c)
	return nil
}

func (s *secretSource) version() string {
	if s.validation {
		return s.val.Load().version
	}
	return s.cert.Load().version
}

// tlsConfig builds the configuration new handshakes on a listener get,
// from the secrets as they are now.
func tlsConfig(spec ListenerSpec, cert *certSecret, val *secretSource, now func() time.Time) *tls.Config {
	c := &tls.Config{
		MinVersion:   spec.MinVersion,
		MaxVersion:   spec.MaxVersion,
		CipherSuites: spec.CipherSuites,
		Certificates: []tls.Certificate{*cert.cert},
		NextProtos:   spec.NextProtos,
	}
	if val == nil {
		return c
	}
	v := val.val.Load()
	// Go's own client verification would insist on the clientAuth extended
	// key usage, which Envoy does not; so the chain and the SANs are checked
	// here, in VerifyConnection, which also runs on resumed sessions.
	c.ClientAuth = tls.RequestClientCert
	if spec.RequireClientCert {
		c.ClientAuth = tls.RequireAnyClientCert
	}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		return v.verify(cs.PeerCertificates, spec.RequireClientCert, now())
	}
	return c
}

var errNoClientCert = errors.New("client certificate required")

func (v *validationSecret) verify(peer []*x509.Certificate, required bool, now time.Time) error {
	if len(peer) == 0 {
		if required {
			return errNoClientCert
		}
		return nil
	}
	inter := x509.NewCertPool()
	for _, c := range peer[1:] {
		inter.AddCert(c)
	}
	_, err := peer[0].Verify(x509.VerifyOptions{
		Roots:         v.pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	if !v.matches(peer[0]) {
		return fmt.Errorf("client certificate: SANs %v %v match none of the configured SANs", peer[0].DNSNames, peer[0].URIs)
	}
	return nil
}
