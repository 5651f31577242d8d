package invoke

import (
	"context"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, for scrapers (the bench, tests) that read /metrics.
const (
	MetricInvocations   = "lambdaplane_invocations_total"
	MetricErrors        = "lambdaplane_errors_total"
	MetricThrottles     = "lambdaplane_throttles_total"
	MetricAsyncEnqueued = "lambdaplane_async_events_enqueued_total"
	MetricDuration      = "lambdaplane_invoke_duration_seconds"
	MetricInitDuration  = "lambdaplane_init_duration_seconds"
	MetricColdStarts    = "lambdaplane_cold_starts_total"
	MetricColdPhase     = "lambdaplane_cold_start_phase_seconds"
	MetricEnvironments  = "lambdaplane_environments"
	MetricEnvStarted    = "lambdaplane_environments_started_total"
	MetricEnvStopped    = "lambdaplane_environments_stopped_total"
	MetricQueueDepth    = "lambdaplane_async_queue_depth"
	MetricQueueAge      = "lambdaplane_async_queue_oldest_age_seconds"
)

// Cold-start modes (the "mode" label).
const (
	ModeNoVPC = "no-vpc"
	ModeVPC   = "vpc"
)

// coldStartHistory bounds the cold starts kept for ColdStarts.
const coldStartHistory = 4096

type metrics struct {
	invocations  *prometheus.CounterVec
	errors       *prometheus.CounterVec
	throttles    *prometheus.CounterVec
	enqueued     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	initDuration *prometheus.HistogramVec
	coldStarts   *prometheus.CounterVec
	phases       *prometheus.HistogramVec
	envStarted   prometheus.Counter
	envStopped   prometheus.Counter
	recursion    *prometheus.CounterVec // recursion.go
	reg          prometheus.Registerer

	mu      sync.Mutex
	history []ColdStart // ring of the last coldStartHistory cold starts
	next    int

	// Per-function series are removed when the function is deleted; an
	// invocation still running then records nothing for it afterwards:
	// a record checks, under fnMu, that the function still exists (live),
	// and forget runs after the deletion is visible. Nothing is kept per
	// deleted function.
	fnMu sync.RWMutex
	live func(account, function string) bool // nil: every function exists
}

func newMetrics(reg prometheus.Registerer, live func(account, function string) bool) *metrics {
	fn := []string{"account", "function"}
	m := &metrics{
		invocations:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricInvocations, Help: "Invocations run, by function, type (RequestResponse or Event) and outcome (success or error)."}, []string{"account", "function", "type", "outcome"}),
		errors:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricErrors, Help: "Invocations that ended in a function or runtime error, by function."}, fn),
		throttles:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricThrottles, Help: "Invocations rejected by concurrency limits, by function."}, fn),
		enqueued:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricAsyncEnqueued, Help: "Event invocations accepted into the async queue, by function."}, fn),
		duration:     prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: MetricDuration, Help: "Synchronous invoke latency inside the scheduler (cold starts included).", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, fn),
		initDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: MetricInitDuration, Help: "Init duration (runtime start until its first /next) of new environments.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, fn),
		coldStarts:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricColdStarts, Help: "Environments started, by function and mode (no-vpc, vpc)."}, []string{"account", "function", "mode"}),
		phases:       prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: MetricColdPhase, Help: "Duration of each cold-start phase, by mode.", Buckets: prometheus.ExponentialBuckets(0.00001, 2, 22)}, []string{"mode", "phase"}),
		envStarted:   prometheus.NewCounter(prometheus.CounterOpts{Name: MetricEnvStarted, Help: "Execution environments whose sandbox started."}),
		envStopped:   prometheus.NewCounter(prometheus.CounterOpts{Name: MetricEnvStopped, Help: "Execution environments torn down."}),
		reg:          reg,
		live:         live,
		recursion:    newRecursionCounter(reg),
	}
	if reg != nil {
		reg.MustRegister(m.invocations, m.errors, m.throttles, m.enqueued, m.duration, m.initDuration, m.coldStarts, m.phases, m.envStarted, m.envStopped)
	}
	return m
}

// watch registers the gauges read from the scheduler's state at scrape time
// (environments by state, async queue). Called once the scheduler exists.
//
// Other state gauges (ENIs and addresses per VPC, from the VPC datapath) are
// registered the same way, next to their owner, on the server's registry:
// see the registration point in internal/server/server.go.
func (m *metrics) watch(s *Scheduler) {
	if m.reg != nil {
		m.reg.MustRegister(&stateCollector{s: s})
	}
}

// invocationType is the "type" label: the async path runs an Event as a
// synchronous invoke internally but counts it as what the caller asked for.
func invocationType(r *Request) string {
	if r.async {
		return Event
	}
	return r.InvocationType
}

// perFunction runs record unless c's function has been deleted, so that a
// late record cannot bring a deleted function's series back.
func (m *metrics) perFunction(c *control.Config, record func()) {
	m.fnMu.RLock()
	defer m.fnMu.RUnlock()
	if m.live == nil || m.live(c.AccountID, c.FunctionName) {
		record()
	}
}

// forget removes the series of a deleted function; called once the
// deletion is visible to live. A record that saw the function alive has
// finished by then (it holds fnMu), one that starts later sees it gone.
func (m *metrics) forget(account, function string) {
	labels := prometheus.Labels{"account": account, "function": function}
	m.fnMu.Lock()
	defer m.fnMu.Unlock()
	m.invocations.DeletePartialMatch(labels)
	m.errors.DeletePartialMatch(labels)
	m.throttles.DeletePartialMatch(labels)
	m.enqueued.DeletePartialMatch(labels)
	m.duration.DeletePartialMatch(labels)
	m.initDuration.DeletePartialMatch(labels)
	m.coldStarts.DeletePartialMatch(labels)
	m.recursion.DeletePartialMatch(labels)
}

func (m *metrics) invocation(c *control.Config, typ, outcome string) {
	m.perFunction(c, func() {
		m.invocations.WithLabelValues(c.AccountID, c.FunctionName, typ, outcome).Inc()
		if outcome == "error" {
			m.errors.WithLabelValues(c.AccountID, c.FunctionName).Inc()
		}
	})
}
func (m *metrics) throttle(c *control.Config) {
	m.perFunction(c, func() { m.throttles.WithLabelValues(c.AccountID, c.FunctionName).Inc() })
}
func (m *metrics) enqueue(c *control.Config) {
	m.perFunction(c, func() { m.enqueued.WithLabelValues(c.AccountID, c.FunctionName).Inc() })
}
func (m *metrics) observeInvoke(c *control.Config, d time.Duration, _ bool) {
	m.perFunction(c, func() { m.duration.WithLabelValues(c.AccountID, c.FunctionName).Observe(d.Seconds()) })
}

func coldStartMode(c *control.Config) string {
	if c.VpcConfig != nil && len(c.VpcConfig.SubnetIDs) > 0 {
		return ModeVPC
	}
	return ModeNoVPC
}

func (m *metrics) observeColdStart(c *control.Config, phases []Phase) {
	mode := coldStartMode(c)
	m.perFunction(c, func() {
		m.coldStarts.WithLabelValues(c.AccountID, c.FunctionName, mode).Inc()
		for _, p := range phases {
			if p.Name == "runtime_init" {
				m.initDuration.WithLabelValues(c.AccountID, c.FunctionName).Observe(p.D.Seconds())
			}
		}
	})
	for _, p := range phases {
		m.phases.WithLabelValues(mode, p.Name).Observe(p.D.Seconds())
	}
	rec := ColdStart{AccountID: c.AccountID, Function: c.FunctionName, Mode: mode, At: time.Now(), Phases: append([]Phase(nil), phases...)}
	m.mu.Lock()
	if len(m.history) < coldStartHistory {
		m.history = append(m.history, rec)
	} else {
		m.history[m.next] = rec
	}
	m.next = (m.next + 1) % coldStartHistory
	m.mu.Unlock()
}
func (m *metrics) envCreated()   { m.envStarted.Inc() }
func (m *metrics) envDestroyed() { m.envStopped.Inc() }

// ColdStart is one recorded cold start and its phases.
type ColdStart struct {
	AccountID, Function, Mode string
	At                        time.Time // when the environment became ready
	Phases                    []Phase
}

// ColdStarts returns the most recent cold starts (at most 4096), oldest
// first. The bench reads per-phase samples from it.
func (s *Scheduler) ColdStarts() []ColdStart {
	m := s.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ColdStart, 0, len(m.history))
	if len(m.history) == coldStartHistory {
		out = append(out, m.history[m.next:]...)
		out = append(out, m.history[:m.next]...)
	} else {
		out = append(out, m.history...)
	}
	return out
}

// stateCollector reads gauges from the scheduler when scraped.
type stateCollector struct{ s *Scheduler }

var (
	envsDesc       = prometheus.NewDesc(MetricEnvironments, "Live execution environments by state (idle, busy).", []string{"state"}, nil)
	queueDepthDesc = prometheus.NewDesc(MetricQueueDepth, "Event invocations queued or running, not yet acknowledged.", nil, nil)
	queueAgeDesc   = prometheus.NewDesc(MetricQueueAge, "Age of the oldest Event invocation still in the queue (0 when empty).", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- envsDesc
	ch <- queueDepthDesc
	ch <- queueAgeDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(envsDesc, prometheus.GaugeValue, float64(st.Idle), "idle")
	ch <- prometheus.MustNewConstMetric(envsDesc, prometheus.GaugeValue, float64(st.Environments-st.Idle), "busy")
	if c.s.async == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if d, err := c.s.QueueDepth(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(queueDepthDesc, prometheus.GaugeValue, float64(d))
	}
	if age, err := c.s.async.oldestAge(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(queueAgeDesc, prometheus.GaugeValue, age.Seconds())
	}
}

// oldestAge is how long the oldest message has been in the work-queue stream
// (acknowledged messages are removed, so the first one is the oldest pending).
func (q *asyncQueue) oldestAge(ctx context.Context) (time.Duration, error) {
	st, err := q.js.Stream(ctx, asyncStream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.State.Msgs == 0 || info.State.FirstTime.IsZero() {
		return 0, nil
	}
	return max(0, time.Since(info.State.FirstTime)), nil
}
