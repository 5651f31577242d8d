package datapath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
)

// Config configures a Reconciler.
type Config struct {
	Model  *vpc.Model
	Router *netdev.Router // set up; internet gateways are links into it
	Logger *slog.Logger
	// Resync re-reads the kernel (full reconcile) this often; default 5m.
	Resync time.Duration
	// Retry is the delay after a failed apply; default 1s.
	Retry time.Duration
	// RepairInterval is how often the kernel is compared with what was
	// applied (service router, pool, VPC routers, interfaces; see
	// netdev.Router.Repair and netdev.VPCs.Verify) and what differs is
	// converged again; a namespace of ours removed from /run/netns starts
	// a pass at once. Default 3s; negative disables repairs.
	RepairInterval time.Duration
	// Hosts is the cluster membership (hosts.go); nil: a single host.
	Hosts Hosts
}

// DefaultRepairInterval is Config.RepairInterval's default.
const DefaultRepairInterval = 3 * time.Second

// eventDebounce coalesces namespace removals into one repair pass.
const eventDebounce = 100 * time.Millisecond

// Reconciler keeps the kernel converged to the VPC model: after every
// model change (coalesced), after an error (Retry) and periodically.
type Reconciler struct {
	cfg  Config
	log  *slog.Logger
	vpcs *netdev.VPCs

	mu      sync.Mutex
	synced  chan struct{} // closed and replaced after every apply
	lastErr error
	force   bool

	kick   chan struct{} // apply now (a broken interface was found)
	repair chan struct{} // a repair pass now (a namespace of ours went)

	applyMu sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
}

// New returns a reconciler; it changes nothing until Start.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Model == nil || cfg.Router == nil {
		return nil, errors.New("datapath: Model and Router are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 5 * time.Minute
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	if cfg.RepairInterval == 0 {
		cfg.RepairInterval = DefaultRepairInterval
	}
	return &Reconciler{
		cfg: cfg, log: cfg.Logger.With("component", "datapath"), vpcs: netdev.NewVPCs(cfg.Router),
		synced: make(chan struct{}), kick: make(chan struct{}, 1), repair: make(chan struct{}, 1),
	}, nil
}

// VPCs exposes the kernel side (tests, counters).
func (r *Reconciler) VPCs() *netdev.VPCs { return r.vpcs }

// Start converges the kernel once (so that after a restart every record is
// rebuilt before the API serves) and then follows the model until Close.
// A failed first convergence is logged and retried; it does not fail Start.
func (r *Reconciler) Start(ctx context.Context) error {
	ch, unsub := r.cfg.Model.Subscribe()
	lctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan struct{})
	if err := r.cfg.Model.Watch(lctx); err != nil {
		r.log.Warn("cannot watch the store for other writers", "err", err)
	}
	t := time.Now()
	err := r.Sync(ctx)
	if err != nil {
		r.log.Error("datapath: first convergence failed; retrying", "err", err)
	} else {
		r.log.Info("datapath converged", "took", time.Since(t).Round(time.Millisecond))
	}
	if r.cfg.RepairInterval > 0 {
		if err := netdev.WatchNetnsRemovals(lctx, r.cfg.Router.Config().Prefix, r.netnsRemoved); err != nil {
			r.log.Warn("cannot watch for removed namespaces; repairs run on the timer only", "err", err)
		}
	}
	go r.loop(lctx, ch, unsub, err != nil)
	return nil
}

// netnsRemoved starts a repair pass when a namespace we believe exists
// was removed (our own removals are of namespaces we no longer know).
func (r *Reconciler) netnsRemoved(name string) {
	if r.cfg.Router.Owns(name) || r.vpcs.Owns(name) {
		r.log.Warn("a namespace of ours was removed; repairing", "netns", name)
		signal(r.repair)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Kick makes the follow loop apply now.
func (r *Reconciler) Kick() { signal(r.kick) }

// Repair runs one repair pass now: the service side (netdev.Router.Repair)
// and the VPC routers (netdev.VPCs.Verify); routers that differ are
// reconciled fully right away. Every repair is counted and logged by
// netdev (Config.OnRepair).
func (r *Reconciler) Repair(ctx context.Context) error {
	rerr := r.cfg.Router.Repair(ctx)
	n, verr := r.vpcs.Verify(ctx)
	var serr error
	if n > 0 {
		serr = r.sync(ctx, r.cfg.Model.DesiredWatched)
	}
	return errors.Join(rerr, verr, serr)
}

func (r *Reconciler) loop(ctx context.Context, ch <-chan struct{}, unsub func(), failed bool) {
	defer close(r.done)
	defer unsub()
	var hostsC <-chan struct{}
	if r.cfg.Hosts != nil {
		c, hunsub := r.cfg.Hosts.Subscribe()
		defer hunsub()
		hostsC = c
	}
	resync := time.NewTicker(r.cfg.Resync)
	defer resync.Stop()
	var repairC <-chan time.Time
	if r.cfg.RepairInterval > 0 {
		t := time.NewTicker(r.cfg.RepairInterval)
		defer t.Stop()
		repairC = t.C
	}
	var retry <-chan time.Time
	if failed {
		retry = time.After(r.cfg.Retry)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-hostsC:
			r.log.Info("cluster membership changed; converging the VPC routers", "view", ViewOf(r.cfg.Hosts).String())
		case <-r.kick:
		case <-retry:
		case <-resync.C:
			r.mu.Lock()
			r.force = true
			r.mu.Unlock()
		case <-repairC:
			r.repairPass(ctx)
			continue
		case <-r.repair:
			// More removals usually follow (a namespace's links, a
			// script's next command): one pass for all of them.
			select {
			case <-ctx.Done():
				return
			case <-time.After(eventDebounce):
			}
			r.repairPass(ctx)
			continue
		}
		retry = nil
		if err := r.sync(ctx, r.cfg.Model.DesiredWatched); err != nil && ctx.Err() == nil {
			r.log.Warn("datapath apply failed; retrying", "err", err, "in", r.cfg.Retry)
			retry = time.After(r.cfg.Retry)
		}
	}
}

func (r *Reconciler) repairPass(ctx context.Context) {
	if err := r.Repair(ctx); err != nil && ctx.Err() == nil {
		r.log.Warn("datapath repair pass failed; retrying on the next", "err", err)
	}
}

// Sync reads the desired state from the store and converges the kernel
// now: every write that returned before it is applied. (The follow loop
// reads the model's watched mirror instead, which is current for every
// change signal it reacts to.)
func (r *Reconciler) Sync(ctx context.Context) error {
	return r.sync(ctx, r.cfg.Model.Desired)
}

func (r *Reconciler) sync(ctx context.Context, desired func(context.Context) (*vpc.DesiredState, error)) error {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	ds, err := desired(ctx)
	if err == nil {
		r.mu.Lock()
		force := r.force
		r.force = false
		r.mu.Unlock()
		if force {
			r.vpcs.Invalidate()
		}
		err = r.vpcs.Apply(ctx, BuildFor(ds, ViewOf(r.cfg.Hosts)))
	}
	r.mu.Lock()
	r.lastErr = err
	close(r.synced)
	r.synced = make(chan struct{})
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("datapath: %w", err)
	}
	return nil
}

// ErrInterfaceNotBuilt is returned by WaitInterface when the context ends
// before the interface's namespace exists.
var ErrInterfaceNotBuilt = errors.New("datapath: the interface's namespace is not built yet")

// WaitInterface waits until interface eniID is built and its datapath is
// in the kernel as applied (checked, not assumed: a broken one is
// repaired first), and returns its namespace path.
func (r *Reconciler) WaitInterface(ctx context.Context, eniID string) (string, error) {
	for {
		r.mu.Lock()
		ch, lastErr := r.synced, r.lastErr
		r.mu.Unlock()
		if p, ok := r.vpcs.InterfaceNetns(eniID); ok {
			err := r.vpcs.CheckInterface(eniID)
			if err == nil {
				return p, nil
			}
			lastErr = err
			r.Kick() // a broken router is reconciled fully by the next apply
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return "", fmt.Errorf("%w (last datapath error: %v)", ErrInterfaceNotBuilt, lastErr)
			}
			return "", ErrInterfaceNotBuilt
		case <-ch:
		}
	}
}

// Close stops following the model and removes every VPC router and
// interface namespace (the records stay; Start rebuilds them).
func (r *Reconciler) Close() error {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	return r.vpcs.Close()
}

// Stop stops following the model and leaves the kernel as it is (a restart
// adopts it in place).
func (r *Reconciler) Stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
}
