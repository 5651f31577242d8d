package provision

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

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	leaseBucket = "provisioned_leases"
	leaseTTL    = 6 * time.Second
	renewBefore = 4 * time.Second
	tick        = 250 * time.Millisecond
)

type lease struct {
	Host  string    `json:"host"`
	Until time.Time `json:"until"`
}

type held struct {
	rev   uint64
	until time.Time
}

type active struct {
	cfg *control.Config
	gen string
}

// Keeper keeps the provisioned environments this host holds leases for.
type Keeper struct {
	ctl    *control.Service
	sched  *invoke.Scheduler
	leases jetstream.KeyValue
	host   string
	home   func(account, function string) bool
	log    *slog.Logger

	held   map[string]held
	active map[string]active

	stop context.CancelFunc
	done chan struct{}
	once sync.Once
}

// Start opens the lease bucket and starts keeping. host names this server
// in the leases (unique among the servers sharing the store). home, on a
// cluster, reports whether this host is a function's home (where its
// synchronous invokes run): only the home takes a configuration's lease,
// and a host that stops being home gives it back at once, so the
// environments are where the invokes go. nil: every function is this
// host's.
func Start(ctx context.Context, st *store.Store, ctl *control.Service, sched *invoke.Scheduler, host string, home func(account, function string) bool, log *slog.Logger) (*Keeper, error) {
	kv, err := st.JetStream().CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: leaseBucket, History: 1, Storage: jetstream.FileStorage, Replicas: st.Replicas(),
	})
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", leaseBucket, err)
	}
	if log == nil {
		log = slog.Default()
	}
	if host == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		host = hex.EncodeToString(b[:])
	}
	rctx, cancel := context.WithCancel(context.Background())
	k := &Keeper{ctl: ctl, sched: sched, leases: kv, host: host, home: home, log: log.With("component", "provision"),
		held: map[string]held{}, active: map[string]active{}, stop: cancel, done: make(chan struct{})}
	go k.run(rctx)
	return k, nil
}

// Close stops keeping and gives the leases back (the environments go
// with the scheduler).
func (k *Keeper) Close() {
	k.once.Do(func() {
		k.stop()
		<-k.done
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for key, h := range k.held {
			_ = k.leases.Delete(ctx, key, jetstream.LastRevision(h.rev))
		}
	})
}

func (k *Keeper) run(ctx context.Context) {
	defer close(k.done)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		k.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func leaseKey(pc *control.ProvisionedConfig) string {
	return pc.AccountID + "." + pc.FunctionName + "." + pc.Qualifier
}

// pass converges once.
func (k *Keeper) pass(ctx context.Context) {
	seen := map[string]bool{}
	for _, pc := range k.ctl.ProvisionedConfigs() {
		key := leaseKey(&pc)
		if k.home != nil && !k.home(pc.AccountID, pc.FunctionName) {
			continue // released below if held: the home takes it
		}
		if !k.lease(ctx, key) {
			continue
		}
		seen[key] = true
		k.keep(ctx, key, &pc)
	}
	for key, a := range k.active {
		if !seen[key] {
			k.sched.SetProvisioned(a.cfg, 0)
			delete(k.active, key)
		}
	}
	for key, h := range k.held {
		if !seen[key] {
			_ = k.leases.Delete(ctx, key, jetstream.LastRevision(h.rev))
			delete(k.held, key)
		}
	}
}

// keep converges one configuration this host holds.
func (k *Keeper) keep(ctx context.Context, key string, pc *control.ProvisionedConfig) {
	cfg, err := k.ctl.ResolveProvisioned(pc)
	if err != nil {
		if a, ok := k.active[key]; ok {
			k.sched.SetProvisioned(a.cfg, 0)
			delete(k.active, key)
		}
		var ce *control.Error
		if errors.As(err, &ce) && ce.Status == 404 {
			// The version or alias was deleted: so is its configuration.
			if err := k.ctl.DropProvisioned(ctx, pc); err != nil {
				k.log.Warn("deleting the provisioned concurrency of a deleted version", "function", pc.FunctionName, "qualifier", pc.Qualifier, "err", err)
			}
			return
		}
		k.report(ctx, pc, 0, control.ProvisionedFailed, "FUNCTION_NOT_FOUND: "+err.Error())
		return
	}
	if a, ok := k.active[key]; ok && (a.cfg.Version != cfg.Version || a.gen != pc.Generation) {
		// An alias moved, or the configuration was put again (a failed
		// one starts over).
		if _, _, failure := k.sched.ProvisionedStatus(a.cfg.AccountID, a.cfg.FunctionName, a.cfg.Version); a.cfg.Version != cfg.Version || failure != "" {
			k.sched.SetProvisioned(a.cfg, 0)
		}
	}
	k.active[key] = active{cfg: cfg, gen: pc.Generation}
	k.sched.SetProvisioned(cfg, pc.Requested)
	ready, _, failure := k.sched.ProvisionedStatus(cfg.AccountID, cfg.FunctionName, cfg.Version)
	status, reason := control.ProvisionedInProgress, ""
	switch {
	case failure != "":
		status, reason = control.ProvisionedFailed, failure
	case ready >= pc.Requested:
		status = control.ProvisionedReady
	}
	k.report(ctx, pc, min(ready, pc.Requested), status, reason)
}

func (k *Keeper) report(ctx context.Context, pc *control.ProvisionedConfig, available int, status, reason string) {
	if pc.Available == available && pc.Status == status && pc.StatusReason == reason {
		return
	}
	if err := k.ctl.SetProvisionedStatus(ctx, pc.AccountID, pc.FunctionName, pc.Qualifier, pc.Generation, available, status, reason); err != nil {
		k.log.Warn("recording provisioned concurrency status", "function", pc.FunctionName, "qualifier", pc.Qualifier, "err", err)
	}
}

// lease reports whether this host holds key's lease, taking or renewing it.
func (k *Keeper) lease(ctx context.Context, key string) bool {
	now := time.Now()
	if h, ok := k.held[key]; ok && h.until.Sub(now) > renewBefore {
		return true
	}
	want, _ := json.Marshal(lease{Host: k.host, Until: now.Add(leaseTTL)})
	e, err := k.leases.Get(ctx, key)
	var rev uint64
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		rev, err = k.leases.Create(ctx, key, want)
	case err != nil:
	default:
		var cur lease
		if json.Unmarshal(e.Value(), &cur) == nil && cur.Host != k.host && now.Before(cur.Until) {
			delete(k.held, key)
			return false
		}
		rev, err = k.leases.Update(ctx, key, want, e.Revision())
	}
	if err != nil {
		delete(k.held, key)
		return false
	}
	k.held[key] = held{rev: rev, until: now.Add(leaseTTL)}
	return true
}
