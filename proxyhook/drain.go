package proxyhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/cellagent/cellagent/containerstore"
	"github.com/cellagent/cellagent/credmanager"
	"github.com/cellagent/cellagent/proxyconfig"
)

// EventDrainUnconfirmed is published when a stopping instance's proxy still
// completed a handshake with the instance identity after ConfirmTimeout.
const EventDrainUnconfirmed = "drain_unconfirmed"

// refuseNewHandshakes makes a stopping instance's proxy present a
// certificate no router accepts, and waits (up to ConfirmTimeout) until a
// handshake with the instance's identity fails on every proxy port. Diego
// does the same (credmanager's Close hands the proxy invalid credentials)
// so that a router that missed the unregister fails the handshake, which
// Gorouter retries on another instance, instead of sending a request to an
// app that is about to get SIGTERM. Connections already open keep working.
func (f filesHook) refuseNewHandshakes(logger lager.Logger, in *instance) {
	inst := in.inst
	logger = logger.Session("refuse-new-handshakes", lager.Data{guidKey: inst.GUID})
	// The confirmed serial goes first: an agent killed before the stop
	// ends must not adopt the instance as confirmed (the proxy may serve
	// the invalid certificate by then). Adoption also checks the SDS
	// file's serial, so a failed remove is logged, not fatal.
	if _, err := f.h.sdsWriting(in, inst.GUID); err != nil {
		logger.Error("failed-to-forget-confirmed-serial", err)
	}
	certPEM, keyPEM, serial, err := invalidCertificate(f.h.cfg.Clock.Now())
	if err == nil {
		err = proxyconfig.WriteCertAndKey(f.h.dir(inst.GUID), certPEM, keyPEM, serial)
	}
	if err != nil {
		logger.Error("failed-to-write-invalid-certificate", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.h.cfg.ConfirmTimeout)
	defer cancel()
	for {
		open := f.acceptingAddr(ctx, inst)
		if open == "" {
			logger.Info("confirmed")
			return
		}
		select {
		case <-ctx.Done():
			logger.Info("unconfirmed", lager.Data{"addr": open})
			f.h.notify(containerstore.Note{GUID: inst.GUID, Type: EventDrainUnconfirmed, Message: "the proxy still accepted the instance identity on " + open})
			return
		case <-f.h.cfg.Clock.After(100 * time.Millisecond):
		}
	}
}

// acceptingAddr answers a proxy address that still completes a verified
// handshake for the instance, or "" when none does.
func (f filesHook) acceptingAddr(ctx context.Context, inst *containerstore.Instance) string {
	for _, m := range inst.Ports {
		if m.ContainerTLSProxyPort == 0 {
			continue
		}
		addr := fmt.Sprintf("%s:%d", inst.InternalIP, m.ContainerTLSProxyPort)
		conn, err := dial(ctx, addr, f.h.verifier.tlsConfig(inst.GUID))
		if conn != nil {
			conn.Close()
		}
		if err == nil {
			return addr
		}
	}
	return ""
}

// invalidCertificate is a throwaway self-signed certificate: signed by no CA
// a router trusts and naming no instance.
func invalidCertificate(now time.Time) (certPEM, keyPEM []byte, serial string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, "", err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, nil, "", err
	}
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: "instance-stopping"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, "", err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, "", err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), credmanager.FormatSerial(sn), nil
}
