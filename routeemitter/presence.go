package routeemitter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// CellPresence is what a cell publishes about itself in the bucket
// PresenceBucket under its cell id, for orchestrators to discover cells.
type CellPresence struct {
	CellID     string    `json:"cell_id"`
	Zone       string    `json:"zone"`
	APIAddress string    `json:"api_address"`
	Total      Resources `json:"total"`
	Available  Resources `json:"available"`
	Containers int       `json:"containers"`
	Evacuating bool      `json:"evacuating"`
	// UpdatedAt is set by the emitter (RFC 3339, the emitter's clock).
	UpdatedAt string `json:"updated_at"`
}

// Resources are the cell's capacity figures, as in /v1/state.
type Resources struct {
	MemoryMB   int `json:"memory_mb"`
	DiskMB     int `json:"disk_mb"`
	Containers int `json:"containers"`
}

// runPresence writes the cell presence now and every PresenceInterval until
// ctx ends (an in-flight write is abandoned), then deletes it. The bucket's TTL removes the key of a
// cell that stops publishing without a clean shutdown.
func (e *Emitter) runPresence(ctx context.Context, logger lager.Logger, nc *nats.Conn) {
	if e.presence == nil {
		return
	}
	logger = logger.Session("presence", lager.Data{"bucket": PresenceBucket, "cell-id": e.cfg.CellID})
	p := &presencePublisher{emitter: e, nc: nc}
	ticker := e.clock.NewTicker(e.cfg.PresenceInterval)
	defer ticker.Stop()
	for {
		if nc.IsConnected() {
			if err := p.publish(ctx); err != nil && ctx.Err() == nil {
				logger.Error("failed-to-publish-presence", err)
			}
		}
		select {
		case <-ctx.Done():
			p.remove(logger)
			return
		case <-ticker.C():
		}
	}
}

// presencePublisher holds the bucket handle between publishes; it is used
// by the presence goroutine only.
type presencePublisher struct {
	emitter *Emitter
	nc      *nats.Conn
	kv      jetstream.KeyValue
}

func (p *presencePublisher) publish(ctx context.Context) error {
	e := p.emitter
	state := e.presence()
	if state.CellID == "" {
		state.CellID = e.cfg.CellID
	}
	if state.Zone == "" {
		state.Zone = e.cfg.Zone
	}
	if state.APIAddress == "" {
		state.APIAddress = e.cfg.APIAddress
	}
	state.UpdatedAt = e.clock.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00")
	data, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("encode presence: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.FlushTimeout)
	defer cancel()
	if p.kv == nil {
		kv, err := p.bucket(ctx)
		if err != nil {
			return err
		}
		p.kv = kv
	}
	if _, err := p.kv.Put(ctx, e.cfg.CellID, data); err != nil {
		// The bucket may be gone (memory storage, server restart):
		// look it up again next time.
		p.kv = nil
		return fmt.Errorf("put presence: %w", err)
	}
	return nil
}

// bucket answers the presence bucket, creating it when missing. The TTL of
// an existing bucket is left as its creator set it.
func (p *presencePublisher) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	js, err := jetstream.New(p.nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	kv, err := js.KeyValue(ctx, PresenceBucket)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		if err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", PresenceBucket, err)
		}
		return kv, nil
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      PresenceBucket,
		Description: "cellagent cell presence, one key per cell id",
		History:     1,
		TTL:         p.emitter.cfg.PresenceTTL,
		Storage:     jetstream.MemoryStorage,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, PresenceBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", PresenceBucket, err)
	}
	return kv, nil
}

// remove deletes the cell's key on clean shutdown so orchestrators stop
// considering the cell at once instead of after the TTL.
func (p *presencePublisher) remove(logger lager.Logger) {
	if !p.nc.IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.emitter.cfg.FlushTimeout)
	defer cancel()
	if p.kv == nil {
		kv, err := p.bucket(ctx)
		if err != nil {
			logger.Error("failed-to-delete-presence", err)
			return
		}
		p.kv = kv
	}
	if err := p.kv.Delete(ctx, p.emitter.cfg.CellID); err != nil {
		logger.Error("failed-to-delete-presence", err)
		return
	}
	logger.Info("presence-deleted")
}
