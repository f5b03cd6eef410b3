// Package locket holds a cell's presence in Diego's Locket: a lock of type
// presence whose key is the cell id and whose value is the CellPresence
// JSON. Locket drops the presence when it is not refreshed within its TTL,
// so the runner refreshes it every RetryInterval, and keeps trying while
// Locket is unreachable or an old owner's presence (a previous run of this
// cell killed with -9) has not expired yet. On shutdown it releases the
// presence so BBS sees the cell go at once.
//
// Concurrency: Presence is an ifrit runner; Run owns the loop and the
// gRPC connection. Held is safe to call from any goroutine.
package locket

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/cellagent/cellagent/rep/models"
	"github.com/cellagent/cellagent/rep/mtls"
)

// gRPC method names of Locket's service (package models, service Locket).
const (
	methodLock    = "/models.Locket/Lock"
	methodRelease = "/models.Locket/Release"
)

// Defaults as the rep uses them (locket.DefaultSessionTTLInSeconds and
// the presence runner's retry interval).
const (
	DefaultTTL           = 15 * time.Second
	DefaultRetryInterval = 5 * time.Second
	presenceType         = "presence"
)

// Config says where Locket is and what presence to hold.
type Config struct {
	Address       string
	TLS           mtls.Files
	Key           string // the cell id
	Value         []byte // CellPresence JSON
	TTL           time.Duration
	RetryInterval time.Duration
	Clock         clock.Clock
	// OwnerFile keeps the owner across restarts: a cell restarted after
	// kill -9 refreshes its own presence at once instead of colliding with
	// it until the TTL runs out (while BBS may call its LRPs suspect).
	// Empty means a new owner per run, as the rep does.
	OwnerFile string
}

// Presence holds the presence while it runs.
type Presence struct {
	logger lager.Logger
	cfg    Config
	owner  string
	conn   *grpc.ClientConn
	held   atomic.Bool
}

// New dials lazily: nothing is contacted before Run.
func New(logger lager.Logger, cfg Config) (*Presence, error) {
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.NewClock()
	}
	tlsCfg, err := mtls.Client(cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("locket tls: %w", err)
	}
	conn, err := grpc.NewClient(cfg.Address, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return nil, fmt.Errorf("locket %s: %w", cfg.Address, err)
	}
	owner, err := loadOwner(cfg.OwnerFile)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &Presence{logger: logger.Session("locket-presence", lager.Data{"key": cfg.Key, "owner": owner}),
		cfg: cfg, owner: owner, conn: conn}, nil
}

// newOwner is a random UUID v4, as the rep's owner is.
func newOwner() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("owner uuid: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// loadOwner reads the owner kept in file, or makes one and keeps it there.
func loadOwner(file string) (string, error) {
	if file == "" {
		return newOwner()
	}
	b, err := os.ReadFile(file)
	if err == nil && ownerPattern.Match(b) {
		return string(b), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("locket owner file: %w", err)
	}
	owner, err := newOwner()
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(file, []byte(owner), 0o600); err != nil {
		return "", fmt.Errorf("locket owner file: %w", err)
	}
	return owner, nil
}

var ownerPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Held reports whether the last lock attempt succeeded.
func (p *Presence) Held() bool { return p.held.Load() }

func (p *Presence) resource() *models.Resource {
	return &models.Resource{Key: p.cfg.Key, Owner: p.owner, Value: string(p.cfg.Value), Type: presenceType,
		TypeCode: models.TypeCode_PRESENCE}
}

// Run refreshes the presence until signalled, then releases it. It is
// ready at once: the cell serves its API while the presence is acquired,
// as the rep does.
func (p *Presence) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	defer p.conn.Close()
	close(ready)
	ticker := p.cfg.Clock.NewTicker(p.cfg.RetryInterval)
	defer ticker.Stop()
	p.lock()
	for {
		select {
		case <-signals:
			p.release()
			return nil
		case <-ticker.C():
			p.lock()
		}
	}
}

func (p *Presence) lock() {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.RetryInterval)
	defer cancel()
	req := &models.LockRequest{Resource: p.resource(), TtlInSeconds: int64(p.cfg.TTL / time.Second)}
	err := p.conn.Invoke(ctx, methodLock, req, &models.LockResponse{})
	was := p.held.Swap(err == nil)
	switch {
	case err != nil && was:
		p.logger.Error("lost-presence", err)
	case err != nil:
		p.logger.Debug("acquire-failed", lager.Data{"error": err.Error()})
	case !was:
		p.logger.Info("acquired-presence")
	}
}

func (p *Presence) release() {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.RetryInterval)
	defer cancel()
	if err := p.conn.Invoke(ctx, methodRelease, &models.ReleaseRequest{Resource: p.resource()}, &models.ReleaseResponse{}); err != nil {
		p.logger.Error("release-failed", err)
		return
	}
	p.held.Store(false)
	p.logger.Info("released-presence")
}
