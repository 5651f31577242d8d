package invoke

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
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
}

// poolKey identifies environments that may serve each other's invokes.
type poolKey struct {
	account, function, version, revision string
}

type pool struct {
	idle    []*env
	retired bool
}

// Scheduler runs invocations.
type Scheduler struct {
	o       Options
	log     *slog.Logger
	metrics *metrics
	tracing *tracing

	mu       sync.Mutex
	pools    map[poolKey]*pool
	all      map[*env]struct{}
	inFlight map[string]int // account -> unreserved in-flight
	fnFlight map[string]int // account.function -> in-flight

	async  *asyncQueue
	stop   chan struct{}
	wg     sync.WaitGroup
	spread atomic.Uint64 // spreads VPC environments over subnets/ENIs
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
	s := &Scheduler{
		o: o, log: o.Logger, metrics: newMetrics(o.Registry, live(o.Control)),
		pools: map[poolKey]*pool{}, all: map[*env]struct{}{},
		inFlight: map[string]int{}, fnFlight: map[string]int{},
		stop: make(chan struct{}),
	}
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
	s.mu.Lock()
	envs := make([]*env, 0, len(s.all))
	for e := range s.all {
		envs = append(envs, e)
	}
	s.all = map[*env]struct{}{}
	s.pools = map[poolKey]*pool{}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range envs {
		wg.Add(1)
		go func(e *env) { defer wg.Done(); s.destroy(e) }(e)
	}
	wg.Wait()
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

	async bool // an Event invocation run by the async queue
}

// Response is what Invoke returns to the API edge.
type Response struct {
	Status          int
	Payload         []byte
	FunctionError   string // "Unhandled" or ""
	LogResult       string // base64 of the last 4 KB of the log, with LogTail
	ExecutedVersion string
	RequestID       string

	// logErr: an Event invoke's log could not be stored (its event is
	// then not acknowledged, so it runs again).
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
	switch r.InvocationType {
	case DryRun:
		return &Response{Status: 204, ExecutedVersion: cfg.Version, RequestID: r.RequestID}, nil
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
		return &Response{Status: 202, RequestID: r.RequestID}, nil
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
	if cfg.VpcConfig != nil {
		s.o.Control.Touch(r.AccountID, cfg.FunctionName)
	}
	return s.run(ctx, r, cfg)
}

// acquire takes a concurrency slot or returns TooManyRequestsException.
func (s *Scheduler) acquire(cfg *control.Config) (func(), error) {
	reserved := s.o.Control.Reserved(cfg.AccountID, cfg.FunctionName)
	fk := cfg.AccountID + "." + cfg.FunctionName
	s.mu.Lock()
	defer s.mu.Unlock()
	if reserved != nil {
		if s.fnFlight[fk] >= *reserved {
			s.metrics.throttle(cfg)
			return nil, control.TooManyRequests("ReservedFunctionConcurrentInvocationLimitExceeded", "Rate Exceeded.")
		}
		s.fnFlight[fk]++
		return func() { s.mu.Lock(); decr(s.fnFlight, fk); s.mu.Unlock() }, nil
	}
	unreserved := s.o.Control.GetAccountSettings(cfg.AccountID).AccountLimit.UnreservedConcurrentExecutions
	if s.inFlight[cfg.AccountID] >= unreserved {
		s.metrics.throttle(cfg)
		return nil, control.TooManyRequests("ConcurrentInvocationLimitExceeded", "Rate Exceeded.")
	}
	s.inFlight[cfg.AccountID]++
	s.fnFlight[fk]++
	return func() { s.mu.Lock(); decr(s.inFlight, cfg.AccountID); decr(s.fnFlight, fk); s.mu.Unlock() }, nil
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

// takeIdle returns a live idle environment of key, if any; environments
// whose process died while idle are discarded on the way.
func (s *Scheduler) takeIdle(key poolKey) *env {
	for {
		s.mu.Lock()
		p := s.pools[key]
		if p == nil || len(p.idle) == 0 {
			s.mu.Unlock()
			return nil
		}
		e := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		s.mu.Unlock()
		select {
		case <-e.proc.Done():
			s.forget(e)
		default:
			return e
		}
	}
}

// release returns a healthy environment to its pool.
func (s *Scheduler) release(e *env) {
	s.mu.Lock()
	p := s.pools[e.key]
	if p == nil || p.retired {
		s.mu.Unlock()
		s.forget(e)
		return
	}
	e.lastUsed = time.Now()
	p.idle = append(p.idle, e)
	s.mu.Unlock()
}

// forget drops an environment from the books and tears it down in the
// background (deleting a veth takes the kernel tens of milliseconds; the
// caller's response must not wait for it).
func (s *Scheduler) forget(e *env) {
	s.mu.Lock()
	delete(s.all, e)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.destroy(e) }()
}

func (s *Scheduler) register(e *env) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.all) >= s.o.MaxEnvironment {
		return control.TooManyRequests("ConcurrentInvocationLimitExceeded", "Rate Exceeded. (this host runs its maximum of %d execution environments)", s.o.MaxEnvironment)
	}
	s.all[e] = struct{}{}
	p := s.pools[e.key]
	if p == nil {
		p = &pool{}
		s.pools[e.key] = p
	}
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
	return resp, err
}

// runOnce runs r on a warm or new environment. It returns (nil, nil) when a
// warm environment died before the invocation was delivered.
func (s *Scheduler) runOnce(ctx context.Context, r *Request, cfg *control.Config, key poolKey, start time.Time) (*Response, error) {
	var err error
	e := s.takeIdle(key)
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
	resp, healthy := s.execute(ctx, r, e, warm)
	s.tracing.invocation(r, cfg, e, !warm, start, time.Now(), resp)
	if healthy {
		s.release(e)
	} else {
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
		TraceID:     r.TraceID, ClientContext: r.ClientContext,
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

// storeLog keeps an invoke's log. An Event invoke's log is stored at once
// and waited for: it is that invoke's only output, and the event is
// acknowledged next, only if it was stored (the error says it was not).
// Other invokes' logs are batched; nothing on their path waits for the store.
func (s *Scheduler) storeLog(r *Request, cfg *control.Config, rec logs.Record) error {
	if s.o.Logs == nil {
		return nil
	}
	if r.async {
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
	var doomed []*env
	s.mu.Lock()
	for k, p := range s.pools {
		if k.account != account || k.function != function {
			continue
		}
		cfg, err := s.o.Control.Resolve(account, "", function, k.version)
		if err == nil && cfg.RevisionID == k.revision {
			continue
		}
		p.retired = true
		doomed = append(doomed, p.idle...)
		p.idle = nil
		delete(s.pools, k)
	}
	for _, e := range doomed {
		delete(s.all, e)
	}
	s.mu.Unlock()
	for _, e := range doomed {
		s.wg.Add(1)
		go func(e *env) { defer s.wg.Done(); s.destroy(e) }(e)
	}
}

// reaper destroys environments idle for longer than IdleTimeout.
func (s *Scheduler) reaper() {
	defer s.wg.Done()
	every := s.o.IdleTimeout / 4
	if every > 10*time.Second {
		every = 10 * time.Second
	}
	if every < 50*time.Millisecond {
		every = 50 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-s.o.IdleTimeout)
		var doomed []*env
		s.mu.Lock()
		for _, p := range s.pools {
			keep := p.idle[:0]
			for _, e := range p.idle {
				if e.lastUsed.Before(cutoff) {
					doomed = append(doomed, e)
					delete(s.all, e)
				} else {
					keep = append(keep, e)
				}
			}
			p.idle = keep
		}
		s.mu.Unlock()
		for _, e := range doomed {
			s.destroy(e)
		}
	}
}

// Stats reports environment counts (for tests and metrics).
type Stats struct {
	Environments, Idle int
}

// Stats returns current counts.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Environments: len(s.all)}
	for _, p := range s.pools {
		st.Idle += len(p.idle)
	}
	return st
}
