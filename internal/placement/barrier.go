package placement

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

func syncSubject(host string) string { return "lp.sync." + host }

// Syncer catches this host's in-memory records up with the store
// (control.Service.Sync).
type Syncer interface {
	Sync(ctx context.Context) error
}

// Barrier makes a control-plane write visible on every live host before
// its caller is answered.
type Barrier struct {
	m   Members
	nc  *nats.Conn
	log *slog.Logger
	sub *nats.Subscription
	// Timeout bounds how long Wait waits for the hosts (default 5 s).
	Timeout time.Duration
}

// NewBarrier answers other hosts' barriers by syncing s.
func NewBarrier(m Members, nc *nats.Conn, s Syncer, log *slog.Logger) (*Barrier, error) {
	if log == nil {
		log = slog.Default()
	}
	b := &Barrier{m: m, nc: nc, log: log, Timeout: 5 * time.Second}
	sub, err := nc.Subscribe(syncSubject(m.Self().ID), func(msg *nats.Msg) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), b.Timeout)
			defer cancel()
			if err := s.Sync(ctx); err != nil {
				_ = msg.Respond([]byte(err.Error()))
				return
			}
			_ = msg.Respond(nil)
		}()
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to barriers: %w", err)
	}
	b.sub = sub
	return b, nil
}

// Wait returns once every live host has caught up with the writes stored
// so far, or after Timeout; a host that does not answer in time is logged
// (it is dead, or partitioned and admits nothing).
func (b *Barrier) Wait(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, b.Timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, h := range b.m.Live() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg, err := b.nc.RequestWithContext(ctx, syncSubject(h.ID), nil)
			if err == nil && len(msg.Data) > 0 {
				err = fmt.Errorf("%s", msg.Data)
			}
			if err != nil {
				b.log.Warn("a host did not confirm it holds the latest records", "host", h.ID, "err", err)
			}
		}()
	}
	wg.Wait()
}

// Close stops answering barriers.
func (b *Barrier) Close() {
	if b.sub != nil {
		_ = b.sub.Unsubscribe()
	}
}
