package routeemitter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

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
	// Gone is set only on the subject (PresenceSubjectPrefix), in the last
	// message of a cell that shuts down cleanly.
	Gone bool `json:"gone,omitempty"`
}

// PresenceSubjectPrefix + cell id is the plain NATS subject presence goes
// to when the server has no JetStream (Cloud Foundry's NATS normally runs
// without it). Each message is a CellPresence JSON document, sent every
// PresenceInterval; a cell's last one on clean shutdown has "gone": true.
// A subscriber (of "cellagent.presence.>") considers a cell gone after that
// message, or when nothing came from it for PresenceTTL. As soon as the
// server offers JetStream the bucket is used again.
const PresenceSubjectPrefix = "cellagent.presence."

// Resources are the cell's capacity figures, as in /v1/state.
type Resources struct {
	MemoryMB   int `json:"memory_mb"`
	DiskMB     int `json:"disk_mb"`
	Containers int `json:"containers"`
}

const presenceTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// PresenceFeed holds the cell's latest presence figures: the cell's
// accounting (the container store) publishes them at every change, the
// Emitter reads the latest at each presence write (New's presence:
// feed.Latest). It is made before both, so neither is connected to the
// other after its construction. Safe for concurrent use; Publish never
// blocks on a reader.
type PresenceFeed struct {
	mu     sync.Mutex
	latest CellPresence
}

// NewPresenceFeed makes a feed; until the first Publish it answers zero
// figures.
func NewPresenceFeed() *PresenceFeed { return &PresenceFeed{} }

// Publish replaces the figures.
func (f *PresenceFeed) Publish(p CellPresence) {
	f.mu.Lock()
	f.latest = p
	f.mu.Unlock()
}

// Latest answers the figures last published.
func (f *PresenceFeed) Latest() CellPresence {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.latest
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
			if err := p.publish(ctx, logger); err != nil && ctx.Err() == nil {
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
	// onSubject is set while the server has no JetStream and presence goes
	// to PresenceSubjectPrefix + cell id instead of the bucket.
	onSubject bool
}

func (p *presencePublisher) subject() string { return PresenceSubjectPrefix + p.emitter.cfg.CellID }

// noJetStream reports whether err says the server (or the account) has no
// JetStream, as opposed to a passing failure.
func noJetStream(err error) bool {
	return errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) ||
		errors.Is(err, nats.ErrNoResponders)
}

// useSubject switches between the bucket and the subject, logging only the
// change: a server without JetStream is a normal deployment, not an error.
func (p *presencePublisher) useSubject(logger lager.Logger, on bool) {
	if on == p.onSubject {
		return
	}
	p.onSubject = on
	if on {
		logger.Info("no-jetstream-publishing-presence-on-subject", lager.Data{"subject": p.subject()})
	} else {
		logger.Info("jetstream-available-publishing-presence-in-bucket")
	}
}

func (p *presencePublisher) publish(ctx context.Context, logger lager.Logger) error {
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
	state.UpdatedAt = e.clock.Now().UTC().Format(presenceTimeLayout)
	data, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("encode presence: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.FlushTimeout)
	defer cancel()
	if p.kv == nil {
		kv, err := p.bucket(ctx)
		if noJetStream(err) {
			p.useSubject(logger, true)
			if err := p.nc.Publish(p.subject(), data); err != nil {
				return fmt.Errorf("publish presence on %s: %w", p.subject(), err)
			}
			return nil
		}
		if err != nil {
			return err
		}
		p.kv = kv
		p.useSubject(logger, false)
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
	if p.onSubject {
		data, _ := json.Marshal(CellPresence{CellID: p.emitter.cfg.CellID, Zone: p.emitter.cfg.Zone,
			APIAddress: p.emitter.cfg.APIAddress, UpdatedAt: p.emitter.clock.Now().UTC().Format(presenceTimeLayout), Gone: true})
		if err := p.nc.Publish(p.subject(), data); err != nil {
			logger.Error("failed-to-publish-presence-gone", err)
			return
		}
		logger.Info("presence-gone-published")
		return
	}
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
