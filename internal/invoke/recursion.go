package invoke

import (
	"fmt"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/destinations"
	"github.com/lambdaplane/lambdaplane/internal/lineage"
	"github.com/prometheus/client_golang/prometheus"
)

// Recursive loop detection, as Lambda does it (internal/lineage): every
// invocation that enters the scheduler (an API invoke, an event source
// mapping's batch, a destination's invocation record) carries its event's
// trace header one step further for its function; when the event already
// reached the function MaxLoops times and the function's RecursiveLoop is
// Terminate, the invocation is stopped: a synchronous one fails with
// RecursiveInvocationException (a queue mapping's batch then returns to its
// queue and reaches the queue's dead-letter queue after maxReceiveCount),
// an Event one is not run and goes to the function's dead-letter queue or
// on-failure destination. Each stop counts in
// lambdaplane_recursive_invocations_dropped_total (Lambda's
// RecursiveInvocationsDropped) and logs a line naming the function.

// MetricRecursionDropped counts invocations stopped in a recursive loop.
const MetricRecursionDropped = "lambdaplane_recursive_invocations_dropped_total"

// recursionMessage is why a stopped event went to the dead-letter queue or
// on-failure destination.
const recursionMessage = "Lambda detected that the function was invoked in a recursive loop and stopped the invocation (RecursiveLoop Terminate)"

func newRecursionCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRecursionDropped,
		Help: "Invocations stopped because their event looped through the function more than 16 times (Lambda's RecursiveInvocationsDropped), by function."},
		[]string{"account", "function"})
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}

// lineage steps r's trace header for cfg's function (a new root when it has
// none) and reports whether the invocation must stop.
func (s *Scheduler) lineage(r *Request, cfg *control.Config) bool {
	if r.TraceID == "" || !strings.Contains(r.TraceID, "Root=") {
		r.TraceID = strings.TrimSuffix(newRootTrace()+";"+r.TraceID, ";")
	}
	var prev int
	r.TraceID, prev = lineage.Step(r.TraceID, lineage.Tag(cfg.AccountID, cfg.FunctionName))
	if prev < lineage.MaxLoops {
		return false
	}
	fs, err := s.o.Control.Settings(cfg.AccountID, cfg.Region, cfg.FunctionName)
	if err != nil || fs.RecursiveLoop == control.RecursiveLoopAllow {
		return false
	}
	s.log.Warn("recursive loop detected: invocation stopped (RecursiveInvocationsDropped; PutFunctionRecursionConfig RecursiveLoop=Allow lets it run)",
		"account", cfg.AccountID, "function", cfg.FunctionName, "invocationType", r.InvocationType, "loops", prev, "requestId", r.RequestID)
	s.metrics.perFunction(cfg, func() { s.metrics.recursion.WithLabelValues(cfg.AccountID, cfg.FunctionName).Inc() })
	return true
}

// recursiveInvocation is the error of a stopped synchronous invocation.
func recursiveInvocation(cfg *control.Config) error {
	return &control.Error{Code: "RecursiveInvocationException", Status: 400,
		Message: fmt.Sprintf("Lambda has detected your function %s being invoked in a recursive loop with other AWS resources and stopped your function's invocation.", cfg.FunctionName)}
}

// stoppedOutcome is what a stopped Event invocation sends to the function's
// dead-letter queue and on-failure destination.
func stoppedOutcome() *destinations.Outcome {
	return &destinations.Outcome{Condition: destinations.RetriesExhausted, Attempts: 0, ErrorMessage: recursionMessage}
}

// newRootTrace is a new X-Ray trace header.
func newRootTrace() string {
	hexID := strings.ReplaceAll(NewRequestID(), "-", "")
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", time.Now().Unix(), hexID[:24], hexID[16:32])
}
