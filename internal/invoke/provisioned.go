package invoke

import (
	"context"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/logs"
)

// Provisioned concurrency: environments of a published version initialized
// ahead of invokes (AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency),
// kept outside the warm book (never reaped, trimmed or evicted for the
// memory budget) until SetProvisioned lowers their number. An invoke of
// their version takes an idle one before any other environment; it is warm
// (its init ran ahead, and its output was logged then), so its REPORT has
// no Init Duration. One that dies is replaced.

// provKey names a provisioned version.
type provKey struct{ account, function, version string }

type provPool struct {
	cfg      *control.Config
	want     int
	idle     []*env
	live     map[*env]bool
	starting int
	failure  string // the last init failure; no more starts until SetProvisioned changes want or cfg
}

// provisioner holds the scheduler's provisioned environments.
type provisioner struct {
	mu    sync.Mutex
	pools map[provKey]*provPool
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

func (s *Scheduler) provs() *provisioner {
	s.provOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		s.prov = &provisioner{pools: map[provKey]*provPool{}, ctx: ctx, stop: cancel}
	})
	return s.prov
}

type provisionedCtxKey struct{}

func isProvisioned(ctx context.Context) bool { v, _ := ctx.Value(provisionedCtxKey{}).(bool); return v }

// initType is the environment's AWS_LAMBDA_INITIALIZATION_TYPE.
func (e *env) initType() string {
	if e.provisioned {
		return "provisioned-concurrency"
	}
	return "on-demand"
}

// SetProvisioned makes the scheduler keep n environments of cfg (a
// published version) initialized; n = 0 releases them. Missing ones are
// started in the background; a changed cfg (revision) replaces them all.
func (s *Scheduler) SetProvisioned(cfg *control.Config, n int) {
	p := s.provs()
	k := provKey{cfg.AccountID, cfg.FunctionName, cfg.Version}
	p.mu.Lock()
	pool := p.pools[k]
	var doomed []*env
	if pool != nil && (pool.cfg.RevisionID != cfg.RevisionID || n == 0) {
		for e := range pool.live {
			doomed = append(doomed, e)
		}
		pool.idle, pool.live = nil, map[*env]bool{}
	}
	if n == 0 {
		delete(p.pools, k)
		p.mu.Unlock()
		s.teardown(doomed, "")
		return
	}
	if pool == nil {
		pool = &provPool{live: map[*env]bool{}}
		p.pools[k] = pool
	}
	if pool.want != n || pool.cfg == nil || pool.cfg.RevisionID != cfg.RevisionID {
		pool.failure = ""
	}
	pool.cfg, pool.want = cfg, n
	// Fewer wanted: idle surplus goes now, busy ones when released.
	for len(pool.live) > n && len(pool.idle) > 0 {
		e := pool.idle[len(pool.idle)-1]
		pool.idle = pool.idle[:len(pool.idle)-1]
		delete(pool.live, e)
		doomed = append(doomed, e)
	}
	start := 0
	if pool.failure == "" {
		start = n - len(pool.live) - pool.starting
	}
	pool.starting += max(0, start)
	p.mu.Unlock()
	s.teardown(doomed, "")
	for range start {
		p.wg.Add(1)
		go s.provisionOne(k, cfg)
	}
}

// provisionOne starts one provisioned environment of cfg.
func (s *Scheduler) provisionOne(k provKey, cfg *control.Config) {
	p := s.provs()
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(context.WithValue(p.ctx, provisionedCtxKey{}, true), initTimeout+time.Minute)
	defer cancel()
	e, failed, err := s.coldStart(ctx, keyOf(cfg), cfg)
	reason := ""
	switch {
	case err != nil:
		reason = err.Error()
	case failed != nil:
		reason = "FUNCTION_ERROR_INIT_FAILURE: " + failed.fe.Type + ": " + failed.fe.Message
		s.storeLog(&Request{}, cfg, logs.Record{Version: cfg.Version, Text: failed.output})
	}
	if e != nil {
		// Its init output is logged now, as on Lambda; its first invoke is warm.
		if out := e.capture.Take(); len(out) > 0 {
			_ = s.storeLog(&Request{}, cfg, logs.Record{Version: cfg.Version, LogStream: e.logStream, Text: out})
		}
		e.cold = false
	}
	p.mu.Lock()
	pool := p.pools[k]
	keep := pool != nil && e != nil && pool.cfg.RevisionID == cfg.RevisionID && len(pool.live) < pool.want
	if pool != nil && pool.cfg.RevisionID == cfg.RevisionID {
		pool.starting--
		if reason != "" {
			pool.failure = reason
		}
	}
	if keep {
		pool.live[e] = true
		pool.idle = append(pool.idle, e)
	}
	p.mu.Unlock()
	if e != nil && !keep {
		s.destroy(e)
	}
	if reason != "" && p.ctx.Err() == nil {
		s.log.Warn("provisioned environment failed to start", "account", cfg.AccountID, "function", cfg.FunctionName, "version", cfg.Version, "reason", reason)
	}
}

// ProvisionedStatus reports how many of a version's provisioned
// environments are ready and, when starting them failed, why.
func (s *Scheduler) ProvisionedStatus(account, function, version string) (ready, starting int, failure string) {
	p := s.provs()
	p.mu.Lock()
	defer p.mu.Unlock()
	pool := p.pools[provKey{account, function, version}]
	if pool == nil {
		return 0, 0, ""
	}
	// A dead idle environment is not ready: drop it (and start another).
	for i := 0; i < len(pool.idle); i++ {
		e := pool.idle[i]
		select {
		case <-e.proc.Done():
			pool.idle = append(pool.idle[:i], pool.idle[i+1:]...)
			delete(pool.live, e)
			i--
			go s.destroy(e)
		default:
		}
	}
	return len(pool.live), pool.starting, pool.failure
}

// takeProvisioned returns an idle provisioned environment of key (now
// busy), or nil.
func (s *Scheduler) takeProvisioned(key poolKey) *env {
	if s.prov == nil {
		return nil
	}
	p := s.prov
	p.mu.Lock()
	defer p.mu.Unlock()
	pool := p.pools[provKey{key.account, key.function, key.version}]
	if pool == nil || pool.cfg.RevisionID != key.revision {
		return nil
	}
	for len(pool.idle) > 0 {
		e := pool.idle[len(pool.idle)-1]
		pool.idle = pool.idle[:len(pool.idle)-1]
		select {
		case <-e.proc.Done():
			delete(pool.live, e)
			go s.destroy(e)
			continue
		default:
		}
		if credsExpiring(e, time.Now()) {
			// Replaced by the next SetProvisioned, with fresh credentials.
			delete(pool.live, e)
			go s.destroy(e)
			continue
		}
		return e
	}
	return nil
}

// releaseProvisioned ends an invoke on a provisioned environment: a
// healthy one still wanted is idle again; others go (and are replaced by
// the next SetProvisioned).
func (s *Scheduler) releaseProvisioned(e *env, healthy bool) {
	p := s.provs()
	p.mu.Lock()
	pool := p.pools[provKey{e.key.account, e.key.function, e.key.version}]
	keep := healthy && pool != nil && pool.live[e] && pool.cfg.RevisionID == e.key.revision && len(pool.live) <= pool.want
	if keep {
		pool.idle = append(pool.idle, e)
	} else if pool != nil {
		delete(pool.live, e)
	}
	p.mu.Unlock()
	if !keep {
		s.teardown([]*env{e}, "")
	}
}

// closeProvisioned destroys every provisioned environment (Close).
func (s *Scheduler) closeProvisioned() {
	if s.prov == nil {
		return
	}
	p := s.prov
	p.stop()
	p.wg.Wait()
	p.mu.Lock()
	var all []*env
	for _, pool := range p.pools {
		for e := range pool.live {
			all = append(all, e)
		}
	}
	p.pools = map[provKey]*provPool{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range all {
		wg.Add(1)
		go func(e *env) { defer wg.Done(); s.destroy(e) }(e)
	}
	wg.Wait()
}
