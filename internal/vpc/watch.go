package vpc

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go/jetstream"
)

// Watch keeps an in-memory mirror of the tables the desired state is
// computed from, fed by one KV watcher per table, until ctx ends. Every
// change by any writer sharing the store (this Model, other processes or
// hosts) reaches the mirror and then this Model's subscribers, so a
// subscriber that calls DesiredWatched after a signal sees that change
// without listing seven buckets from the store (the cost of every datapath
// convergence). Without Watch, Subscribe reports only mutations made
// through this Model and DesiredWatched lists the store.
func (m *Model) Watch(ctx context.Context) error {
	mi := &mirror{ready: make(chan struct{})}
	var wg sync.WaitGroup
	var errs []error
	start := func(w func(context.Context, *mirror, func(), func()) error) {
		wg.Add(1)
		if err := w(ctx, mi, wg.Done, m.changed); err != nil {
			wg.Done()
			errs = append(errs, err)
		}
	}
	start(mirrorTable(m.vpcs, func(mi *mirror) map[string]*VPC { return lazy(&mi.vpc) }))
	start(mirrorTable(m.subs, func(mi *mirror) map[string]*Subnet { return lazy(&mi.sub) }))
	start(mirrorTable(m.sgs, func(mi *mirror) map[string]*SecurityGroup { return lazy(&mi.sg) }))
	start(mirrorTable(m.enis, func(mi *mirror) map[string]*NetworkInterface { return lazy(&mi.eni) }))
	start(mirrorTable(m.rtbs, func(mi *mirror) map[string]*RouteTable { return lazy(&mi.rtb) }))
	start(mirrorTable(m.igws, func(mi *mirror) map[string]*InternetGateway { return lazy(&mi.igw) }))
	start(mirrorTable(m.nats, func(mi *mirror) map[string]*NatGateway { return lazy(&mi.nat) }))
	if len(errs) > 0 {
		return fmt.Errorf("vpc: watch: %v", errs[0])
	}
	go func() {
		wg.Wait() // every table's initial values are in
		close(mi.ready)
	}()
	m.mu.Lock()
	m.mirror = mi
	m.mu.Unlock()
	go func() {
		<-ctx.Done()
		m.mu.Lock()
		if m.mirror == mi {
			m.mirror = nil
		}
		m.mu.Unlock()
	}()
	return nil
}

// mirror is the in-memory copy Watch keeps: records by store key. Values
// are decoded once per change and never modified afterwards, so a
// snapshot may share them.
type mirror struct {
	ready chan struct{} // closed once every table's initial values arrived

	mu  sync.Mutex
	vpc map[string]*VPC
	sub map[string]*Subnet
	sg  map[string]*SecurityGroup
	eni map[string]*NetworkInterface
	rtb map[string]*RouteTable
	igw map[string]*InternetGateway
	nat map[string]*NatGateway
}

// lazy returns the map *m, allocating it first if needed; callers hold mu.
func lazy[T any](m *map[string]*T) map[string]*T {
	if *m == nil {
		*m = map[string]*T{}
	}
	return *m
}

// snapshot copies the mirror's records, each table in key order (as a
// store listing returns them).
func (mi *mirror) snapshot() *Snapshot {
	mi.mu.Lock()
	defer mi.mu.Unlock()
	return &Snapshot{
		VPCs: values(mi.vpc), Subnets: values(mi.sub), SecurityGroups: values(mi.sg),
		Interfaces: values(mi.eni), RouteTables: values(mi.rtb), InternetGateways: values(mi.igw), NatGateways: values(mi.nat),
	}
}

func values[T any](m map[string]*T) []*T {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]*T, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

// mirrorTable returns a starter for one table's watcher: it applies the
// table's current records, calls loaded once they are all in, then applies
// every later change (put or delete) and calls changed after each.
func mirrorTable[T any](t *store.Table[T], table func(*mirror) map[string]*T) func(context.Context, *mirror, func(), func()) error {
	return func(ctx context.Context, mi *mirror, loaded, changed func()) error {
		w, err := t.KV().WatchAll(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", t.KV().Bucket(), err)
		}
		go func() {
			defer func() { _ = w.Stop() }()
			initial := true
			done := func() {
				if initial {
					initial = false
					loaded()
				}
			}
			defer done() // a watcher that ends early must not block Desired forever
			for {
				select {
				case <-ctx.Done():
					return
				case e, ok := <-w.Updates():
					if !ok {
						return
					}
					if e == nil { // end of the initial values
						done()
						continue
					}
					var v *T
					if e.Operation() == jetstream.KeyValuePut {
						v = new(T)
						if err := json.Unmarshal(e.Value(), v); err != nil {
							continue // not a record of this table; List would fail on it too
						}
					}
					mi.mu.Lock()
					m := table(mi)
					if v != nil {
						m[e.Key()] = v
					} else {
						delete(m, e.Key())
					}
					mi.mu.Unlock()
					if !initial {
						changed()
					}
				}
			}
		}()
		return nil
	}
}
