package control

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// appliedRev is the newest revision a bucket's watch has applied.
type appliedRev struct{ rev atomic.Uint64 }

// track wraps put so that each applied entry raises the mark.
func track[T any](a *appliedRev, put func(string, *T, uint64)) func(string, *T, uint64) {
	return func(k string, v *T, rev uint64) {
		put(k, v, rev)
		for {
			cur := a.rev.Load()
			if rev <= cur || a.rev.CompareAndSwap(cur, rev) {
				return
			}
		}
	}
}

// Sync returns once this server's in-memory records (functions, versions,
// aliases) hold every write the store had acknowledged when Sync was
// called: in a cluster, the host that took a write asks every other host
// to Sync before it answers, so no host runs a function's old code after
// its update was acknowledged.
func (s *Service) Sync(ctx context.Context) error {
	kvs := []jetstream.KeyValue{s.fns.KV(), s.versions.KV(), s.aliases.KV()}
	for i, kv := range kvs {
		if err := waitApplied(ctx, kv, &s.cache.applied[i]); err != nil {
			return err
		}
	}
	return s.syncAccess(ctx) // resource policies, function URLs (policy.go)
}

// waitApplied returns once a's watch of kv has applied every write kv
// held when it was called.
func waitApplied(ctx context.Context, kv jetstream.KeyValue, a *appliedRev) error {
	st, err := kv.Status(ctx)
	if err != nil {
		return fmt.Errorf("read bucket %s: %w", kv.Bucket(), err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return nil
	}
	last := bs.StreamInfo().State.LastSeq
	for a.rev.Load() < last {
		select {
		case <-ctx.Done():
			return fmt.Errorf("records of bucket %s not caught up (at %d of %d): %w", kv.Bucket(), a.rev.Load(), last, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// Latest is every function's $LATEST configuration, from memory (no
// store read): a cluster host prepares the functions it stands by for.
func (s *Service) Latest() []*Config {
	s.cache.mu.RLock()
	defer s.cache.mu.RUnlock()
	var out []*Config
	for _, c := range s.cache.versions {
		if c.v != nil && c.v.Version == "$LATEST" {
			out = append(out, c.v)
		}
	}
	return out
}
