package invoke

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/hyperplane"
	"github.com/lambdaplane/lambdaplane/internal/logs"
	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/runtimeapi"
	"github.com/lambdaplane/lambdaplane/internal/runtimes"
	"github.com/lambdaplane/lambdaplane/internal/sandbox"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// Payload limits (bytes).
const (
	MaxSyncPayload  = 6 * 1024 * 1024
	MaxAsyncPayload = 1024 * 1024
	logTailBytes    = 4096
)

// Invocation types.
const (
	RequestResponse = "RequestResponse"
	Event           = "Event"
	DryRun          = "DryRun"
)

// Options wires a Scheduler.
type Options struct {
	Control    *control.Service
	Router     *netdev.Router
	Sandbox    *sandbox.Manager
	Runtimes   *runtimes.Table
	RuntimeDir string // host directory mounted at /var/runtime
	Logs       *logs.Store
	LogRate    logs.RateLimit // bound on each environment's output (zero: logs' defaults)
	JetStream  jetstream.JetStream
	Registry   prometheus.Registerer

	IdleTimeout    time.Duration   // idle environments are reaped after this (default 5m)
	AsyncWorkers   int             // concurrent Event invocations (default 16)
	AsyncAckWait   time.Duration   // redelivery after a crash (default 30s)
	AsyncBackoff   []time.Duration // delays before the 2 retries (default 1m, 2m)
	ThrottleDelay  time.Duration   // delay before retrying a throttled Event (default 5s)
	Logger         *slog.Logger
	DisableAsync   bool // tests of the sync path only
	MaxEnvironment int  // safety bound on simultaneous environments (default 4096)

	// MemoryBudgetMB bounds the memory of the environments (0 = none):
	// each is charged its cgroup's high-water mark (what the REPORT line
	// calls Max Memory Used) plus EnvOverheadMB for its kernel and server
	// state. Past it the least recently used idle environments are
	// destroyed; busy ones are never taken away.
	MemoryBudgetMB int64
	// WarmHeadroom is how many environments are kept beyond the peak
	// concurrency of the last PeakWindow, as a fraction of it (default
	// 0.2; < 0: none are trimmed, idle ones live until IdleTimeout or the
	// budget). Surplus ones go least recently used first once idle for
	// SurplusIdle; a function's last environment is never surplus.
	WarmHeadroom float64
	PeakWindow   time.Duration // default 1 minute
	SurplusIdle  time.Duration // default 3 s
	// TeardownWorkers release environments' network namespaces (default 2).
	TeardownWorkers int
	// ColdStartWait bounds how long an invoke that finds no idle
	// environment waits for one of its function's busy ones before it
	// starts a new one; it waits at most the function's recent invoke
	// duration, and only when some are busy (default 50 ms; < 0: never).
	ColdStartWait time.Duration

	// Networks attaches VPC functions' environments to their Hyperplane
	// ENIs (or, in per-env-eni mode, creates one per environment).
	Networks *hyperplane.Manager
	// SetupWait bounds how long an invoke waits for a function's VPC setup
	// beyond its own timeout (default 90 s).
	SetupWait time.Duration

	// Traces: TracerProvider when set (tests), else OTLP/HTTP export to
	// OTLPEndpoint when set, else none.
	TracerProvider trace.TracerProvider
	OTLPEndpoint   string

	// Credentials issues each new environment's execution-role
	// credentials (nil: environments get none); EndpointURL is the
	// platform endpoint environments are told (AWS_ENDPOINT_URL; "" none).
	Credentials CredentialSource
	EndpointURL string

	// HostID names this host in every response (X-Lambdaplane-Host).
	HostID string
	// Placement, when set (a cluster), decides which host runs each
	// synchronous invocation; nil runs every one here.
	Placement Placement
	// AccountSlots, when set (a cluster), counts the account concurrency
	// limit cluster-wide instead of on this host alone.
	AccountSlots AccountSlots
	// Destinations, when set, gives Event invocations their retry and
	// age limits and receives their outcomes (destinations.go).
	Destinations AsyncDestinations
}

// Placement runs a synchronous invocation where it belongs: here, by
// calling local, or on another host (internal/placement).
type Placement interface {
	Route(ctx context.Context, r *Request, cfg *control.Config, local func(context.Context) (*Response, error)) (*Response, error)
}

// AccountSlots is the cluster-wide account concurrency: Take admits one
// more unreserved invocation of account under limit (false: throttle),
// Give returns it.
type AccountSlots interface {
	Take(ctx context.Context, account string, limit int) bool
	Give(account string)
}

// Scheduler runs invocations.
type Scheduler struct {
	o       Options
	log     *slog.Logger
	metrics *metrics
	tracing *tracing

	mu       sync.Mutex
	book     *warmBook
	inFlight map[string]int // account -> unreserved in-flight
	fnFlight map[string]int // account.function -> in-flight

	netTeardown *teardownQueue[*netdev.EnvNet]
	netStash    *netStash
	evictions   *prometheus.CounterVec // environments destroyed while healthy, by reason

	async  *asyncQueue
	stop   chan struct{}
	wg     sync.WaitGroup
	spread atomic.Uint64 // spreads VPC environments over subnets/ENIs

	provOnce sync.Once
	prov     *provisioner // provisioned environments (provisioned.go)
}

// New builds a Scheduler and starts its reaper and async workers.
func New(ctx context.Context, o Options) (*Scheduler, error) {
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.AsyncWorkers == 0 {
		o.AsyncWorkers = 16
	}
	if o.AsyncAckWait == 0 {
		o.AsyncAckWait = 30 * time.Second
	}
	if o.AsyncBackoff == nil {
		o.AsyncBackoff = []time.Duration{time.Minute, 2 * time.Minute}
	}
	if o.ThrottleDelay == 0 {
		o.ThrottleDelay = 5 * time.Second
	}
	if o.SetupWait == 0 {
		o.SetupWait = 90 * time.Second
	}
	if o.MaxEnvironment == 0 {
		o.MaxEnvironment = 4096
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.WarmHeadroom == 0 {
		o.WarmHeadroom = 0.2
	}
	if o.PeakWindow == 0 {
		o.PeakWindow = time.Minute
	}
	if o.SurplusIdle == 0 {
		// 1 s evicted environments that the next second's invokes of
		// their function needed again (a function's demand swings around
		// its mean): mixed load p99 1.13 s with 1,600 surplus evictions
		// against 0.61-0.78 s with 1,100-1,200 at 3 s, for 300-310
		// environments instead of 258-272 (200 in flight).
		o.SurplusIdle = 3 * time.Second
	}
	if o.TeardownWorkers == 0 {
		o.TeardownWorkers = 2
	}
	if o.ColdStartWait == 0 {
		o.ColdStartWait = 50 * time.Millisecond
	}
	s := &Scheduler{
		o: o, log: o.Logger, metrics: newMetrics(o.Registry, live(o.Control)),
		book:     newWarmBook(int(o.PeakWindow / reaperTick(o.IdleTimeout))),
		inFlight: map[string]int{}, fnFlight: map[string]int{},
		stop: make(chan struct{}),
	}
	s.netTeardown = newTeardownQueue(o.TeardownWorkers, func(n *netdev.EnvNet) error { return o.Router.Release(n) }, o.Logger)
	s.evictions = newEvictions(o.Registry)
	s.netStash = newNetStash(netStashMax)
	tr, err := newTracing(ctx, o)
	if err != nil {
		return nil, err
	}
	s.tracing = tr
	s.metrics.watch(s)
	s.wg.Add(1)
	go s.reaper()
	if !o.DisableAsync {
		q, err := newAsyncQueue(ctx, s)
		if err != nil {
			close(s.stop)
			return nil, err
		}
		s.async = q
	}
	return s, nil
}

// Close stops background work and tears every environment down.
func (s *Scheduler) Close() {
	close(s.stop)
	if s.async != nil {
		s.async.close()
	}
	s.wg.Wait()
	defer s.tracing.close()
	s.closeProvisioned()
	s.mu.Lock()
	envs := s.book.removeAll()
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range envs {
		wg.Add(1)
		go func(e *env) { defer wg.Done(); s.destroy(e) }(e)
	}
	wg.Wait()
	for _, n := range s.netStash.close() {
		s.netTeardown.add(n)
	}
	s.netTeardown.close()
}

// Request is one Invoke call.
type Request struct {
	AccountID, Region  string
	Function           string // name, partial ARN or ARN (may carry :qualifier)
	Qualifier          string
	InvocationType     string
	Payload            []byte
	LogTail            bool
	ClientContext      string // base64 as sent in X-Amz-Client-Context
	RequestID          string // set for async re-deliveries
	TraceID            string
	ExcludeFromLimiter bool
	// StoreLog: the caller acknowledges the invocation's source once
	// Invoke returns (an event source mapping deletes its batch), so the
	// log is stored before Invoke returns, as an Event invoke's is, and
	// Response.LogError says when it could not be.
	StoreLog bool
	// Stream, when set, receives a response the function streams as it
	// arrives (InvokeWithResponseStream, streaming function URLs); such
	// an invocation always runs on this host.
	Stream runtimeapi.StreamSink

	async     bool // an Event invocation run by the async queue
	here      bool // placed on this host already (InvokeHere)
	recursive bool // stopped in a recursive loop (recursion.go)
}

// Async reports whether r is an Event invocation run from the queue.
func (r *Request) Async() bool { return r.async }

// Response is what Invoke returns to the API edge.
type Response struct {
	Status          int
	Payload         []byte
	FunctionError   string // "Unhandled" or ""
	LogResult       string // base64 of the last 4 KB of the log, with LogTail
	ExecutedVersion string
	RequestID       string
	// Host is the id of the host whose environment ran it.
	Host string
	// Streamed: the payload went to Request.Stream.
	Streamed bool

	// logErr: an Event (or StoreLog) invoke's log could not be stored
	// (its event is then not acknowledged, so it runs again).
	logErr error
}

// NewRequestID returns a UUID-shaped id.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Invoke runs (or queues) one invocation.
func (s *Scheduler) Invoke(ctx context.Context, r *Request) (*Response, error) {
	if r.InvocationType == "" {
		r.InvocationType = RequestResponse
	}
	if r.RequestID == "" {
		r.RequestID = NewRequestID()
	}
	cfg, err := s.o.Control.Resolve(r.AccountID, r.Region, r.Function, r.Qualifier)
	if err != nil {
		return nil, err
	}
	if !r.async && !r.here && r.InvocationType != DryRun && s.lineage(r, cfg) {
		// Stopped in a recursive loop: an Event goes to the queue only to
		// reach its dead-letter queue or on-failure destination.
		if r.InvocationType != Event {
			return nil, recursiveInvocation(cfg)
		}
		r.recursive = true
	}
	switch r.InvocationType {
	case DryRun:
		return &Response{Status: 204, ExecutedVersion: cfg.Version, RequestID: r.RequestID, Host: s.o.HostID}, nil
	case Event:
		if len(r.Payload) > MaxAsyncPayload {
			return nil, tooLarge(MaxAsyncPayload)
		}
		if s.async == nil {
			return nil, control.InvalidParam("asynchronous invocation is disabled on this server")
		}
		if err := s.async.enqueue(ctx, r, cfg); err != nil {
			return nil, err
		}
		s.metrics.enqueue(cfg)
		return &Response{Status: 202, RequestID: r.RequestID, Host: s.o.HostID}, nil
	case RequestResponse:
	default:
		return nil, badInvocationType(r.InvocationType)
	}
	if len(r.Payload) > MaxSyncPayload {
		return nil, tooLarge(MaxSyncPayload)
	}
	if cfg.State != control.StateActive || cfg.LastUpdateStatus == control.UpdateInProgress {
		// Pending (VPC setup), updating, or Inactive (reclaimed): wait for
		// it — a longer cold start, as the 2019 design promised — bounded
		// by the function timeout plus the setup time.
		wctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.Timeout)*time.Second+s.o.SetupWait)
		err := s.o.Control.Ready(wctx, r.AccountID, cfg.FunctionName)
		cancel()
		if err != nil {
			return nil, err
		}
		if cfg, err = s.o.Control.Resolve(r.AccountID, r.Region, r.Function, r.Qualifier); err != nil {
			return nil, err
		}
	}
	if s.o.Placement != nil && !r.here && r.Stream == nil {
		return s.o.Placement.Route(ctx, r, cfg, func(ctx context.Context) (*Response, error) {
			if cfg.VpcConfig != nil {
				s.o.Control.Touch(r.AccountID, cfg.FunctionName)
			}
			return s.run(ctx, r, cfg)
		})
	}
	if cfg.VpcConfig != nil {
		s.o.Control.Touch(r.AccountID, cfg.FunctionName)
	}
	return s.run(ctx, r, cfg)
}

// InvokeHere runs a synchronous invocation that placement sent to this
// host, on this host.
func (s *Scheduler) InvokeHere(ctx context.Context, r *Request, async bool) (*Response, error) {
	r.here, r.async = true, async
	return s.Invoke(ctx, r)
}

// LogError is the error storing an Event invocation's log, if any.
func (r *Response) LogError() error { return r.logErr }

// SetLogError records that an Event invocation's log could not be stored
// (on the host that ran it).
func (r *Response) SetLogError(err error) { r.logErr = err }

// acquire takes a concurrency slot or returns TooManyRequestsException.
// An invocation admitted counts in its function's flight and in the warm
// book's demand (warmBook.enter) until it is released.
func (s *Scheduler) acquire(cfg *control.Config) (func(), error) {
	reserved := s.o.Control.Reserved(cfg.AccountID, cfg.FunctionName)
	fk := cfg.AccountID + "." + cfg.FunctionName
	admit := func() { s.fnFlight[fk]++; s.book.enter() }
	leave := func() { decr(s.fnFlight, fk); s.book.leave() }
	s.mu.Lock()
	defer s.mu.Unlock()
	if reserved != nil {
		if s.fnFlight[fk] >= *reserved {
			s.metrics.throttle(cfg)
			return nil, control.TooManyRequests("ReservedFunctionConcurrentInvocationLimitExceeded", "Rate Exceeded.")
		}
		admit()
		return func() { s.mu.Lock(); leave(); s.mu.Unlock() }, nil
	}
	unreserved := s.o.Control.GetAccountSettings(cfg.AccountID).AccountLimit.UnreservedConcurrentExecutions
	if sl := s.o.AccountSlots; sl != nil {
		// Cluster-wide: a slot of the account's lease (no store write;
		// a request to the ledger host only when the lease runs out).
		s.mu.Unlock()
		ok := sl.Take(context.Background(), cfg.AccountID, unreserved)
		s.mu.Lock()
		if !ok {
			s.metrics.throttle(cfg)
			return nil, control.TooManyRequests("ConcurrentInvocationLimitExceeded", "Rate Exceeded.")
		}
		s.inFlight[cfg.AccountID]++
		admit()
		return func() {
			s.mu.Lock()
			decr(s.inFlight, cfg.AccountID)
			leave()
			s.mu.Unlock()
			sl.Give(cfg.AccountID)
		}, nil
	}
	if s.inFlight[cfg.AccountID] >= unreserved {
		s.metrics.throttle(cfg)
		return nil, control.TooManyRequests("ConcurrentInvocationLimitExceeded", "Rate Exceeded.")
	}
	s.inFlight[cfg.AccountID]++
	admit()
	return func() { s.mu.Lock(); decr(s.inFlight, cfg.AccountID); leave(); s.mu.Unlock() }, nil
}

// live reports whether a function exists (nil without a control plane).
func live(c *control.Service) func(account, function string) bool {
	if c == nil {
		return nil
	}
	return c.Exists
}

// decr counts one in-flight invocation of k less; a key at zero goes, so
// the books hold only functions running now (not every function ever).
func decr(m map[string]int, k string) {
	if m[k]--; m[k] <= 0 {
		delete(m, k)
	}
}

func keyOf(cfg *control.Config) poolKey {
	return poolKey{cfg.AccountID, cfg.FunctionName, cfg.Version, cfg.RevisionID}
}

// EnvOverheadMB is what an environment costs beyond its cgroup's memory:
// its network namespace and veth, page tables, kernel stacks and the
// server's state (about 0.7 MB measured by the bench's memory scenario).
const EnvOverheadMB = 1

// takeIdle returns a live idle environment of key, if any; environments
// whose process died while idle are discarded on the way.
func (s *Scheduler) takeIdle(key poolKey) *env {
	for {
		s.mu.Lock()
		e := s.book.take(key)
		s.mu.Unlock()
		if e == nil {
			return nil
		}
		select {
		case <-e.proc.Done():
			s.forget(e)
		default:
			if credsExpiring(e, time.Now()) {
				s.forget(e)
				continue
			}
			return e
		}
	}
}

// release returns a healthy environment to its pool (or to an invoke
// waiting for one), charged memMB, after an invoke that took exec; and
// keeps the environments within the memory budget.
func (s *Scheduler) release(e *env, memMB int, exec time.Duration) {
	s.mu.Lock()
	out := s.book.release(e, memMB, time.Now(), exec)
	var doomed []*env
	if s.o.MemoryBudgetMB > 0 && s.book.memMB > s.o.MemoryBudgetMB {
		doomed = s.book.overBudget(s.o.MemoryBudgetMB)
	}
	s.mu.Unlock()
	s.teardown(doomed, "memory_budget")
	if out == dropped {
		s.teardown([]*env{e}, "superseded")
	}
}

// takeOrWait returns an idle environment of key, or else, when some of
// key's environments are busy with short invokes, the first of them to be
// released within ColdStartWait; nil: start one.
func (s *Scheduler) takeOrWait(ctx context.Context, key poolKey) *env {
	if e := s.takeIdle(key); e != nil {
		return e
	}
	s.mu.Lock()
	w, d := s.book.await(key, s.o.ColdStartWait)
	s.mu.Unlock()
	if w == nil {
		return nil
	}
	t := time.NewTimer(d)
	var e *env
	select {
	case e = <-w.ch:
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	if e == nil {
		s.mu.Lock()
		served := s.book.cancel(w)
		s.mu.Unlock()
		if !served {
			return nil
		}
		e = <-w.ch
	}
	select {
	case <-e.proc.Done():
		s.forget(e)
		return s.takeIdle(key)
	default:
		return e
	}
}

// forget drops an environment from the books and tears it down in the
// background (deleting a veth takes the kernel tens of milliseconds; the
// caller's response must not wait for it).
func (s *Scheduler) forget(e *env) {
	s.mu.Lock()
	s.book.drop(e)
	s.mu.Unlock()
	s.teardown([]*env{e}, "")
}

// teardown destroys environments in the background; why, when set, is the
// reason counted in the evictions metric.
func (s *Scheduler) teardown(doomed []*env, why string) {
	if len(doomed) == 0 {
		return
	}
	if why != "" && s.evictions != nil {
		s.evictions.WithLabelValues(why).Add(float64(len(doomed)))
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for _, e := range doomed {
			s.destroy(e)
		}
	}()
}

// current reports whether key still resolves to its revision (s.mu held;
// the control cache takes its own lock, never ours).
func (s *Scheduler) current(key poolKey) bool {
	cfg, err := s.o.Control.Resolve(key.account, "", key.function, key.version)
	return err == nil && cfg.RevisionID == key.revision
}

// register books a new environment, busy with its first invoke. One whose
// version changed while it started serves that invoke and is not kept.
func (s *Scheduler) register(e *env) error {
	e.memMB = e.proc.MaxMemoryUsedMB() + EnvOverheadMB
	s.mu.Lock()
	if len(s.book.all) >= s.o.MaxEnvironment {
		s.mu.Unlock()
		return control.TooManyRequests("ConcurrentInvocationLimitExceeded", "Rate Exceeded. (this host runs its maximum of %d execution environments)", s.o.MaxEnvironment)
	}
	s.book.add(e, s.current)
	var doomed []*env
	if s.o.MemoryBudgetMB > 0 && s.book.memMB > s.o.MemoryBudgetMB {
		doomed = s.book.overBudget(s.o.MemoryBudgetMB)
	}
	s.mu.Unlock()
	s.teardown(doomed, "memory_budget")
	return nil
}

// run executes a synchronous invocation.
func (s *Scheduler) run(ctx context.Context, r *Request, cfg *control.Config) (*Response, error) {
	rel, err := s.acquire(cfg)
	if err != nil {
		return nil, err
	}
	defer rel()
	start := time.Now()
	key := keyOf(cfg)
	resp, err := s.runOnce(ctx, r, cfg, key, start)
	if err == nil && resp == nil {
		// A warm environment died before it fetched the invocation (e.g.
		// its runtime exited after the previous error): the invocation
		// never started, so it runs on a fresh environment (a cold one,
		// which cannot take this path again).
		resp, err = s.runOnce(ctx, r, cfg, key, start)
	}
	if resp != nil {
		resp.Host = s.o.HostID
	}
	return resp, err
}

// runOnce runs r on a warm or new environment. It returns (nil, nil) when a
// warm environment died before the invocation was delivered.
func (s *Scheduler) runOnce(ctx context.Context, r *Request, cfg *control.Config, key poolKey, start time.Time) (*Response, error) {
	var err error
	e := s.takeProvisioned(key)
	if e == nil {
		e = s.takeOrWait(ctx, key)
	}
	if e == nil {
		// An update may have superseded cfg since the invoke resolved it
		// (its pool is gone): run on the new version's environments
		// rather than start one of the old that nothing would reuse.
		if cur, err := s.o.Control.Resolve(cfg.AccountID, "", cfg.FunctionName, cfg.Version); err == nil &&
			cur.RevisionID != cfg.RevisionID && cur.State == control.StateActive && cur.LastUpdateStatus != control.UpdateInProgress {
			cfg, key = cur, keyOf(cur)
			e = s.takeOrWait(ctx, key)
		}
	}
	warm := e != nil
	if e == nil {
		var failed *initFailure
		e, failed, err = s.coldStart(ctx, key, cfg)
		if err != nil {
			s.metrics.invocation(cfg, invocationType(r), "error")
			return nil, err
		}
		if failed != nil {
			return s.initFailed(r, cfg, failed, time.Since(start)), nil
		}
		if err := s.register(e); err != nil {
			s.destroy(e)
			return nil, err
		}
	}
	t0 := time.Now()
	resp, healthy := s.execute(ctx, r, e, warm)
	s.tracing.invocation(r, cfg, e, !warm, start, time.Now(), resp)
	switch {
	case e.provisioned:
		s.releaseProvisioned(e, healthy)
	case healthy:
		s.release(e, e.maxMemMB+EnvOverheadMB, time.Since(t0))
	default:
		s.forget(e)
	}
	if resp == nil {
		return nil, nil
	}
	s.metrics.observeInvoke(cfg, time.Since(start), resp.FunctionError != "")
	return resp, nil
}

// initFailed builds the response of an invocation whose environment never
// became ready; the init output and the error are logged.
func (s *Scheduler) initFailed(r *Request, cfg *control.Config, failed *initFailure, d time.Duration) *Response {
	fe := failed.fe
	var b strings.Builder
	b.Write(failed.output) // what init printed (e.g. the traceback) comes first, as on AWS
	b.WriteString(logs.StartLine(r.RequestID, cfg.Version))
	fmt.Fprintf(&b, "INIT_REPORT Init Duration: %.2f ms\tPhase: init\tStatus: error\tError Type: %s\n", float64(d.Microseconds())/1000, fe.Type)
	b.WriteString(logs.EndLine(r.RequestID))
	b.WriteString(logs.ReportLine(logs.Report{RequestID: r.RequestID, Duration: d, MemorySizeMB: cfg.MemorySize, Status: "error"}))
	text := []byte(b.String())
	logErr := s.storeLog(r, cfg, logs.Record{Version: cfg.Version, RequestID: r.RequestID, Text: text})
	s.metrics.invocation(cfg, invocationType(r), "error")
	resp := &Response{Status: 200, Payload: errorBody(fe), FunctionError: "Unhandled", ExecutedVersion: cfg.Version, RequestID: r.RequestID, logErr: logErr}
	if r.LogTail {
		resp.LogResult = tail(text)
	}
	return resp
}

// execute runs one invocation on e. It reports whether e may be reused.
// A nil response means a warm environment died before the runtime fetched
// the invocation (it never started; the caller retries it elsewhere).
func (s *Scheduler) execute(ctx context.Context, r *Request, e *env, warm bool) (*Response, bool) {
	cfg := e.cfg
	timeout := time.Duration(cfg.Timeout) * time.Second
	deadline := time.Now().Add(timeout)
	ictx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	// Init output (drained: it belongs before this START), or output
	// printed between invokes (already collected by the reader).
	var pre []byte
	if e.cold {
		pre = e.capture.Take()
	} else {
		pre = e.capture.TakeBuffered()
	}
	t0 := time.Now()
	// The answer, the deadline, or the process's death, whichever comes first.
	res, err := e.rapi.InvokeWhile(ictx, &runtimeapi.Invocation{
		RequestID: r.RequestID, Payload: r.Payload, Deadline: deadline,
		FunctionARN: control.QualifiedARN(cfg.Region, cfg.AccountID, cfg.FunctionName, r.Qualifier),
		TraceID:     r.TraceID, ClientContext: r.ClientContext, Stream: r.Stream,
	}, e.proc.Done(), errProcessExited)
	dur := time.Since(t0)

	healthy := true
	status := ""
	var fe *runtimeapi.FunctionError
	switch {
	case err == nil && res.Err == nil:
	case err == nil:
		fe = res.Err
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		healthy, status = false, "timeout"
		fe = &runtimeapi.FunctionError{Type: "Sandbox.Timedout", Message: fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", r.RequestID, timeout.Seconds())}
	case errors.Is(err, errProcessExited) && warm && errors.Is(err, runtimeapi.ErrUndelivered):
		return nil, false
	case errors.Is(err, errProcessExited):
		healthy, status = false, "error"
		<-e.proc.Done()
		fe = s.exitError(e, r.RequestID)
	default:
		healthy, status = false, "error"
		fe = &runtimeapi.FunctionError{Type: "ServiceException", Message: fmt.Sprintf("RequestId: %s Error: %v", r.RequestID, err)}
	}
	out := e.capture.Take()
	maxMem := e.proc.MaxMemoryUsedMB() // the environment's high-water mark, as AWS reports it
	e.maxMemMB = maxMem

	var b strings.Builder
	b.Write(pre)
	b.WriteString(logs.StartLine(r.RequestID, cfg.Version))
	b.Write(out)
	if fe != nil && status != "" {
		fmt.Fprintf(&b, "%s %s\n", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), fe.Message)
	}
	b.WriteString(logs.EndLine(r.RequestID))
	rep := logs.Report{RequestID: r.RequestID, Duration: dur, MemorySizeMB: cfg.MemorySize, MaxMemoryMB: maxMem, Status: status}
	if e.cold {
		rep.InitDuration = e.initDur
		e.cold = false
	}
	b.WriteString(logs.ReportLine(rep))
	text := []byte(b.String())
	logErr := s.storeLog(r, cfg, logs.Record{Version: cfg.Version, LogStream: e.logStream, RequestID: r.RequestID, Text: text})

	resp := &Response{Status: 200, ExecutedVersion: cfg.Version, RequestID: r.RequestID, logErr: logErr}
	if res != nil {
		resp.Streamed = res.Streamed
	}
	if fe != nil {
		resp.FunctionError = "Unhandled"
		resp.Payload = errorBody(fe)
		s.metrics.invocation(cfg, invocationType(r), "error")
	} else {
		resp.Payload = res.Payload
		s.metrics.invocation(cfg, invocationType(r), "success")
	}
	if r.LogTail {
		resp.LogResult = tail(text)
	}
	return resp, healthy
}

// storeLog keeps an invoke's log. An Event invoke's log, and a StoreLog
// one's (a mapping's batch), is stored at once and waited for: it is that
// invoke's only output, and its source is acknowledged next, only if it
// was stored (the error says it was not). Other invokes' logs are
// batched; nothing on their path waits for the store.
func (s *Scheduler) storeLog(r *Request, cfg *control.Config, rec logs.Record) error {
	if s.o.Logs == nil {
		return nil
	}
	if l := cfg.Logging(); l.LogFormat == control.LogFormatJSON {
		if rec.Time.IsZero() {
			rec.Time = time.Now()
		}
		rec.Text = logs.FormatJSON(rec.Text, rec.Time, l.ApplicationLogLevel, l.SystemLogLevel)
	}
	if r.async || r.StoreLog {
		return s.o.Logs.AppendNow(cfg.AccountID, cfg.FunctionName, rec)
	}
	_ = s.o.Logs.Append(cfg.AccountID, cfg.FunctionName, rec)
	return nil
}

func errorBody(fe *runtimeapi.FunctionError) []byte {
	if len(fe.Body) > 0 {
		return fe.Body
	}
	return []byte(fmt.Sprintf(`{"errorType":%q,"errorMessage":%q}`, fe.Type, fe.Message))
}

func tail(b []byte) string {
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
	}
	return base64.StdEncoding.EncodeToString(b)
}

// Retire is called when a function's records change: environments whose
// version/revision no longer resolves are destroyed (idle ones now, busy
// ones when their invocation ends). When the function is gone, its metric
// series are removed.
func (s *Scheduler) Retire(account, function string) {
	var ce *control.Error
	if _, err := s.o.Control.Resolve(account, "", function, ""); errors.As(err, &ce) && ce.Code == "ResourceNotFoundException" {
		s.metrics.forget(account, function)
	}
	s.mu.Lock()
	doomed := s.book.retire(func(k poolKey) bool {
		return k.account == account && k.function == function && !s.current(k)
	})
	s.mu.Unlock()
	s.teardown(doomed, "superseded")
}

// reaperTick is how often the reaper looks at the idle environments and
// samples the peak concurrency.
func reaperTick(idleTimeout time.Duration) time.Duration {
	return min(max(idleTimeout/4, 50*time.Millisecond), 250*time.Millisecond)
}

// reaper destroys environments idle for longer than IdleTimeout, and
// surplus ones: those beyond the peak concurrency of the last PeakWindow
// plus WarmHeadroom, idle for SurplusIdle, least recently used first.
func (s *Scheduler) reaper() {
	defer s.wg.Done()
	t := time.NewTicker(reaperTick(s.o.IdleTimeout))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		s.mu.Lock()
		s.book.samplePeak()
		idle := s.book.reap(now.Add(-s.o.IdleTimeout))
		var surplus []*env
		if s.o.WarmHeadroom >= 0 {
			target := int(math.Ceil(float64(s.book.peak()) * (1 + s.o.WarmHeadroom)))
			surplus = s.book.trim(target, now.Add(-s.o.SurplusIdle))
		}
		s.mu.Unlock()
		s.teardown(idle, "idle_timeout")
		s.teardown(surplus, "surplus")
		for _, n := range s.netStash.expire(now.Add(-netStashTTL)) {
			s.netTeardown.add(n)
		}
	}
}

// A destroyed environment's network namespace waits at most netStashTTL
// for a cold start of its account; at most netStashMax wait.
const (
	netStashTTL = 10 * time.Second
	netStashMax = 256
)

// Stats reports environment counts (for tests and metrics).
type Stats struct {
	Environments, Idle, Busy int
	Peak                     int   // most environments busy at once over the last PeakWindow
	MemoryMB                 int64 // charged to the environments (see Options.MemoryBudgetMB)
}

// Stats returns current counts.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Environments: len(s.book.all), Idle: s.book.idle.n, Busy: s.book.busy, Peak: s.book.peak(), MemoryMB: s.book.memMB}
}
