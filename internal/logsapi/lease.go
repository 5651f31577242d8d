package logsapi

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go/jetstream"
)

// lease is a store-held lease: one key in a bucket whose entries expire
// after ttl unless renewed, so background work runs on one server of a
// cluster at a time and moves to another when its holder dies.
type lease struct {
	kv     jetstream.KeyValue
	key    string
	holder string

	mu  sync.Mutex
	rev uint64 // the revision we wrote last; 0 = not held
}

func newLease(ctx context.Context, st *store.Store, bucket, key, holder string, ttl time.Duration) (*lease, error) {
	kv, err := st.JetStream().CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket, History: 1, Storage: jetstream.FileStorage, Replicas: st.Replicas(), TTL: ttl,
	})
	if err != nil {
		return nil, fmt.Errorf("open lease bucket %s: %w", bucket, err)
	}
	return &lease{kv: kv, key: key, holder: holder}, nil
}

// hold takes or renews the lease; it reports whether this server holds it.
func (l *lease) hold(ctx context.Context) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rev != 0 {
		rev, err := l.kv.Update(ctx, l.key, []byte(l.holder), l.rev)
		if err == nil {
			l.rev = rev
			return true
		}
		l.rev = 0 // lost it (expired and taken, or the store failed)
	}
	rev, err := l.kv.Create(ctx, l.key, []byte(l.holder))
	if err == nil {
		l.rev = rev
		return true
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false
	}
	return false
}

// release gives the lease up (if held).
func (l *lease) release(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rev != 0 {
		_ = l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
		l.rev = 0
	}
}
