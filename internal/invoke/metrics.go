package invoke

import (
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	invocations *prometheus.CounterVec
	throttles   *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	coldStarts  *prometheus.CounterVec
	phases      *prometheus.HistogramVec
	envs        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lambdaplane_invocations_total", Help: "Invocations by function, type and outcome."}, []string{"account", "function", "type", "outcome"}),
		throttles:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lambdaplane_throttles_total", Help: "Invocations rejected by concurrency limits."}, []string{"account", "function"}),
		duration:    prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lambdaplane_invoke_duration_seconds", Help: "Synchronous invoke latency inside the scheduler.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, []string{"account", "function"}),
		coldStarts:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lambdaplane_cold_starts_total", Help: "Environments started."}, []string{"account", "function", "mode"}),
		phases:      prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lambdaplane_cold_start_phase_seconds", Help: "Duration of each cold-start phase.", Buckets: prometheus.ExponentialBuckets(0.00001, 2, 22)}, []string{"phase"}),
		envs:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "lambdaplane_environments", Help: "Live execution environments."}),
	}
	if reg != nil {
		reg.MustRegister(m.invocations, m.throttles, m.duration, m.coldStarts, m.phases, m.envs)
	}
	return m
}

func (m *metrics) invocation(c *control.Config, typ, outcome string) {
	m.invocations.WithLabelValues(c.AccountID, c.FunctionName, typ, outcome).Inc()
}
func (m *metrics) throttle(c *control.Config) {
	m.throttles.WithLabelValues(c.AccountID, c.FunctionName).Inc()
}
func (m *metrics) observeInvoke(c *control.Config, d time.Duration, _ bool) {
	m.duration.WithLabelValues(c.AccountID, c.FunctionName).Observe(d.Seconds())
}
func (m *metrics) observeColdStart(c *control.Config, phases []Phase) {
	mode := "no-vpc"
	if c.VpcConfig != nil && len(c.VpcConfig.SubnetIDs) > 0 {
		mode = "vpc"
	}
	m.coldStarts.WithLabelValues(c.AccountID, c.FunctionName, mode).Inc()
	for _, p := range phases {
		m.phases.WithLabelValues(p.Name).Observe(p.D.Seconds())
	}
}
func (m *metrics) envCreated()   { m.envs.Inc() }
func (m *metrics) envDestroyed() { m.envs.Dec() }
