package vpc

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Watch forwards changes made by any writer sharing the store (other
// processes or hosts) to this Model's subscribers until ctx ends. Without
// it, Subscribe reports only mutations made through this Model.
func (m *Model) Watch(ctx context.Context) error {
	kvs := []jetstream.KeyValue{m.vpcs.KV(), m.subs.KV(), m.sgs.KV(), m.enis.KV(), m.rtbs.KV(), m.igws.KV(), m.nats.KV()}
	for _, kv := range kvs {
		w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
		if err != nil {
			return fmt.Errorf("vpc: watch %s: %w", kv.Bucket(), err)
		}
		go func() {
			defer func() { _ = w.Stop() }()
			for {
				select {
				case <-ctx.Done():
					return
				case e, ok := <-w.Updates():
					if !ok {
						return
					}
					if e != nil {
						m.changed()
					}
				}
			}
		}()
	}
	return nil
}
