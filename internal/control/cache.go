package control

import (
	"context"
	"encoding/json"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// cache mirrors the three record buckets in memory so that resolving an
// invoke target costs no store round trip. It is fed by local writes (read
// your writes) and by KV watches (other writers); a revision guard keeps a
// late watch event from overwriting a newer local write.
type cache struct {
	mu       sync.RWMutex
	fns      map[string]cached[Function]
	versions map[string]cached[Config]
	aliases  map[string]cached[Alias]
	// applied is the newest revision the watch of each bucket (functions,
	// versions, aliases) has put into the cache (Sync).
	applied  [3]appliedRev
	onChange func(account, name string)
}

type cached[T any] struct {
	v   *T // nil = deleted
	rev uint64
}

func newCache(onChange func(account, name string)) *cache {
	return &cache{
		fns:      map[string]cached[Function]{},
		versions: map[string]cached[Config]{},
		aliases:  map[string]cached[Alias]{},
		onChange: onChange,
	}
}

// applyTo applies a put (v != nil) or delete of key at revision rev (0: a
// local delete, whose revision is not known). A delete leaves a tombstone
// holding the newest revision seen, so a late watch event cannot bring the
// record back; once the watch itself delivers the delete (rev != 0), no
// older event of the key can follow (a watch delivers in order) and the
// entry goes, so deleted records cost nothing.
func applyTo[T any](mu *sync.RWMutex, m map[string]cached[T], key string, v *T, rev uint64) bool {
	mu.Lock()
	defer mu.Unlock()
	cur, ok := m[key]
	if ok && rev != 0 && rev <= cur.rev {
		return false
	}
	switch {
	case v == nil && rev != 0:
		if !ok {
			return false // nothing to delete (a new watch replaying a deleted key)
		}
		delete(m, key)
		return cur.v != nil
	case v == nil:
		if !ok {
			return false
		}
		rev = cur.rev
	}
	m[key] = cached[T]{v: v, rev: rev}
	return true
}

func (c *cache) changed(key string) {
	if c.onChange == nil {
		return
	}
	parts := strings.SplitN(key, ".", 3)
	if len(parts) >= 2 {
		c.onChange(parts[0], parts[1])
	}
}

func (c *cache) putFn(key string, v *Function, rev uint64) {
	if applyTo(&c.mu, c.fns, key, v, rev) {
		c.changed(key)
	}
}
func (c *cache) putVersion(key string, v *Config, rev uint64) {
	if applyTo(&c.mu, c.versions, key, v, rev) {
		c.changed(key)
	}
}
func (c *cache) putAlias(key string, v *Alias, rev uint64) {
	if applyTo(&c.mu, c.aliases, key, v, rev) {
		c.changed(key)
	}
}

func (c *cache) fn(key string) *Function {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.fns[key].v
}
func (c *cache) version(key string) *Config {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.versions[key].v
}
func (c *cache) alias(key string) *Alias {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.aliases[key].v
}

// watch feeds bucket kv into put until ctx ends; it returns once the initial
// values have been loaded.
func watch[T any](ctx context.Context, kv jetstream.KeyValue, put func(string, *T, uint64)) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	ready := make(chan struct{})
	go func() {
		defer w.Stop()
		once := false
		for e := range w.Updates() {
			if e == nil {
				if !once {
					once = true
					close(ready)
				}
				continue
			}
			switch e.Operation() {
			case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
				put(e.Key(), nil, e.Revision())
			default:
				v := new(T)
				if json.Unmarshal(e.Value(), v) == nil {
					put(e.Key(), v, e.Revision())
				}
			}
		}
		if !once {
			close(ready)
		}
	}()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
