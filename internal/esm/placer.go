package esm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go/jetstream"
)

// LeaseTTL is how long a mapping's lease outlives its last renewal: a
// mapping whose server died is taken over within it.
const LeaseTTL = 6 * time.Second

const leaseBucket = "esm_leases"

// lease is the value of a mapping's lease key.
type lease struct {
	Host string `json:"host"`
	Boot string `json:"boot"`
}

// PlacerOptions wires a Placer.
type PlacerOptions struct {
	Service   *Service
	Queues    Queues
	Functions Functions
	Invoker   Invoker
	// HostID names this server; a server that restarts with the same id
	// takes its earlier leases back at once instead of waiting LeaseTTL.
	HostID string
	Logger *slog.Logger
	// Tick is how often leases are renewed and every mapping looked at
	// (default LeaseTTL/3); a change to a mapping is acted on at once.
	Tick time.Duration
	// MaxPollers bounds one mapping's pollers when it has no
	// ScalingConfig (default 1000).
	MaxPollers int
}

// Placer runs the pollers of the mappings whose leases this server holds.
type Placer struct {
	o      PlacerOptions
	log    *slog.Logger
	boot   string
	leases jetstream.KeyValue
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// stopping: runners being stopped in the background.
	stopping sync.WaitGroup

	mu      sync.Mutex
	running map[string]*runner // key → runner
	kick    chan struct{}
}

// StartPlacer opens the lease bucket and starts placing pollers.
func StartPlacer(ctx context.Context, st *store.Store, o PlacerOptions) (*Placer, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Tick == 0 {
		o.Tick = LeaseTTL / 3
	}
	if o.MaxPollers == 0 {
		o.MaxPollers = MaxMaximumConcurrency
	}
	if o.HostID == "" {
		o.HostID = "host"
	}
	kv, err := st.JetStream().CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: leaseBucket, History: 1, Storage: jetstream.FileStorage, TTL: LeaseTTL, Replicas: max(1, st.Replicas()),
	})
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", leaseBucket, err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	pctx, cancel := context.WithCancel(context.Background())
	p := &Placer{o: o, log: o.Logger, boot: hex.EncodeToString(b[:]), leases: kv, ctx: pctx, cancel: cancel,
		running: map[string]*runner{}, kick: make(chan struct{}, 1)}
	w, err := o.Service.table.KV().WatchAll(pctx, jetstream.UpdatesOnly())
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch event source mappings: %w", err)
	}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		for range w.Updates() {
			p.Kick()
		}
	}()
	go p.loop()
	return p, nil
}

// Kick makes the placer look at every mapping now.
func (p *Placer) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Close stops every poller and gives this server's leases back, so
// another server takes the mappings over at once.
func (p *Placer) Close() {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	rs := p.running
	p.running = map[string]*runner{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for k, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.stop()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = p.leases.Delete(ctx, leaseKey(k), jetstream.LastRevision(r.leaseRev))
			cancel()
		}()
	}
	wg.Wait()
	p.stopping.Wait()
}

// Running lists the keys of the mappings whose pollers run here (tests).
func (p *Placer) Running() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.running))
	for k := range p.running {
		out = append(out, k)
	}
	return out
}

// conflict reports a revision-checked write refused: another writer's.
func conflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

func leaseKey(k string) string { return "l." + k[len("m."):] }

func (p *Placer) loop() {
	defer p.wg.Done()
	t := time.NewTicker(p.o.Tick)
	defer t.Stop()
	for {
		p.pass()
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
		}
	}
}

// pass settles transitional states, renews or takes leases, and starts
// or stops runners to match.
func (p *Placer) pass() {
	ctx, cancel := context.WithTimeout(p.ctx, max(p.o.Tick, LeaseTTL-p.o.Tick))
	defer cancel()
	entries, err := p.o.Service.table.List(ctx, "m.>")
	if err != nil {
		if p.ctx.Err() == nil {
			p.log.Warn("listing event source mappings failed", "err", err)
		}
		return
	}
	seen := map[string]bool{}
	for _, e := range entries {
		m := e.Value
		if st, changed := settled(m); changed {
			if st == "" {
				p.stopRunner(e.Key)
				if err := p.o.Service.table.KV().Purge(ctx, e.Key, jetstream.LastRevision(e.Revision)); err == nil {
					p.o.Service.releaseClaim(ctx, m)
					p.log.Info("event source mapping deleted", "uuid", m.UUID)
				}
				continue
			}
			n := *m
			n.State = st
			if _, err := p.o.Service.table.UpdateAt(ctx, e.Key, &n, e.Revision); err != nil {
				continue // another server settled it, or it changed: the next pass sees it
			}
			m = &n
		}
		seen[e.Key] = true
		if m.State != StateEnabled {
			p.stopRunner(e.Key)
			continue
		}
		p.hold(ctx, e.Key, m)
	}
	p.mu.Lock()
	var gone []string
	for k := range p.running {
		if !seen[k] {
			gone = append(gone, k)
		}
	}
	p.mu.Unlock()
	for _, k := range gone {
		p.stopRunner(k)
	}
}

// hold renews this server's lease of m (or takes it when free or held by
// an earlier boot of this host) and keeps m's runner going.
func (p *Placer) hold(ctx context.Context, k string, m *Mapping) {
	val, _ := json.Marshal(lease{Host: p.o.HostID, Boot: p.boot})
	lk := leaseKey(k)
	p.mu.Lock()
	r := p.running[k]
	p.mu.Unlock()
	if r != nil {
		rev, err := p.leases.Update(ctx, lk, val, r.leaseRev)
		if err != nil {
			// Another server's write (the lease lapsed and was taken) ends
			// it at once; a slow store only once the lease may have lapsed.
			if !conflict(err) && time.Since(r.renewed) < LeaseTTL-p.o.Tick {
				p.log.Warn("renewing the lease of an event source mapping failed; retrying", "uuid", m.UUID, "err", err)
				return
			}
			p.log.Warn("lost the lease of an event source mapping; its pollers stop here", "uuid", m.UUID, "err", err)
			p.stopRunner(k)
			return
		}
		r.leaseRev, r.renewed = rev, time.Now()
		r.update(m)
		return
	}
	rev, err := p.leases.Create(ctx, lk, val)
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := p.leases.Get(ctx, lk)
		if gerr != nil {
			return
		}
		var l lease
		if json.Unmarshal(e.Value(), &l) != nil || l.Host != p.o.HostID {
			return // another server holds it
		}
		// An earlier boot of this host, or this one after a renewal that
		// failed: take it back now.
		rev, err = p.leases.Update(ctx, lk, val, e.Revision())
	}
	if err != nil {
		return
	}
	r = newRunner(p, m)
	r.leaseRev, r.renewed = rev, time.Now()
	p.mu.Lock()
	if p.ctx.Err() != nil {
		p.mu.Unlock()
		return
	}
	p.running[k] = r
	p.mu.Unlock()
	p.log.Info("polling for event source mapping", "uuid", m.UUID, "queue", m.EventSourceArn, "function", m.FunctionArn(), "host", p.o.HostID)
	r.start()
}

// stopRunner stops a mapping's pollers without holding up the loop (a
// poller may be in a long poll, or finishing its batch) and then gives
// the lease back.
func (p *Placer) stopRunner(k string) {
	p.mu.Lock()
	r := p.running[k]
	delete(p.running, k)
	p.mu.Unlock()
	if r == nil {
		return
	}
	r.cancel()
	rev := r.leaseRev
	p.stopping.Add(1)
	go func() {
		defer p.stopping.Done()
		r.stop()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = p.leases.Delete(ctx, leaseKey(k), jetstream.LastRevision(rev))
		cancel()
	}()
}
