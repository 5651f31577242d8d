package e2e

import (
	"context"
	"errors"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/api"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
	dto "github.com/prometheus/client_model/go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func scrape(t *testing.T, e *env) map[string]*dto.MetricFamily {
	t.Helper()
	return scrapeURL(t, e.srv.MetricsEndpoint)
}

func scrapeURL(t *testing.T, endpoint string) map[string]*dto.MetricFamily {
	t.Helper()
	return harness.ScrapeMetrics(t, endpoint)
}

// metricValue sums the counters, gauges or histogram counts of name whose
// labels include want.
func metricValue(mf map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	return harness.MetricValue(mf, name, want)
}

// TestMetricsCountWhatHappened runs a known sequence of invokes and checks
// the counters on /metrics against it.
func TestMetricsCountWhatHappened(t *testing.T) {
	t.Parallel()
	e := startServer(t)
	const okName, errName, thrName = "m-ok", "m-err", "m-throttle"
	for _, n := range []string{okName, errName, thrName} {
		e.createProbe(n)
	}
	ctx := context.Background()
	if _, err := e.lambda.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String(thrName), ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	noRetry := func(o *lambda.Options) { o.RetryMaxAttempts = 1 }
	const N, M, K = 4, 3, 2
	for i := 0; i < N; i++ {
		if _, out := e.invokeJSON(okName, map[string]any{"name": "x"}); out.FunctionError != nil {
			t.Fatalf("invoke %s: function error %s", okName, out.Payload)
		}
	}
	for i := 0; i < M; i++ {
		if _, out := e.invokeJSON(errName, map[string]any{"action": "error"}); out.FunctionError == nil {
			t.Fatalf("invoke %s: no function error", errName)
		}
	}
	for i := 0; i < K; i++ {
		_, err := e.lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(thrName), Payload: []byte(`{}`)}, noRetry)
		var tmr *types.TooManyRequestsException
		if !errors.As(err, &tmr) {
			t.Fatalf("invoke %s with reserved concurrency 0: %v, want TooManyRequestsException", thrName, err)
		}
	}
	if _, err := e.lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(okName), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the Event invocation to run", func() bool {
		mf := scrape(t, e)
		return metricValue(mf, invoke.MetricInvocations, map[string]string{"function": okName, "type": "Event", "outcome": "success"}) == 1 &&
			metricValue(mf, invoke.MetricQueueDepth, nil) == 0
	})
	mf := scrape(t, e)
	check := func(what string, got, want float64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	inv := func(fn, typ, outcome string) float64 {
		return metricValue(mf, invoke.MetricInvocations, map[string]string{"function": fn, "type": typ, "outcome": outcome})
	}
	fn := func(name string) map[string]string { return map[string]string{"function": name} }
	check("sync successes", inv(okName, "RequestResponse", "success"), N)
	check("async successes", inv(okName, "Event", "success"), 1)
	check("function errors (invocations)", inv(errName, "RequestResponse", "error"), M)
	check("errors", metricValue(mf, invoke.MetricErrors, fn(errName)), M)
	check("errors of the healthy function", metricValue(mf, invoke.MetricErrors, fn(okName)), 0)
	check("throttles", metricValue(mf, invoke.MetricThrottles, fn(thrName)), K)
	check("throttled invocations run", metricValue(mf, invoke.MetricInvocations, fn(thrName)), 0)
	check("async events enqueued", metricValue(mf, invoke.MetricAsyncEnqueued, fn(okName)), 1)
	check("cold starts of "+errName, metricValue(mf, invoke.MetricColdStarts, map[string]string{"function": errName, "mode": "no-vpc"}), 1)
	cold := metricValue(mf, invoke.MetricColdStarts, nil)
	check("namespace phase observations", metricValue(mf, invoke.MetricColdPhase, map[string]string{"phase": "namespace", "mode": "no-vpc"}), cold)
	check("init durations observed", metricValue(mf, invoke.MetricInitDuration, nil), cold)
	check("invoke durations observed for "+okName, metricValue(mf, invoke.MetricDuration, fn(okName)), N+1)
	check("environments idle+busy", metricValue(mf, invoke.MetricEnvironments, nil), float64(e.srv.Scheduler().Stats().Environments))
	check("busy environments", metricValue(mf, invoke.MetricEnvironments, map[string]string{"state": "busy"}), 0)
	check("async queue oldest age", metricValue(mf, invoke.MetricQueueAge, nil), 0)
	req := func(op, status string) float64 {
		return metricValue(mf, api.MetricRequests, map[string]string{"service": "lambda", "operation": op, "status": status})
	}
	check("Invoke 200", req("Invoke", "200"), N+M)
	check("Invoke 202", req("Invoke", "202"), 1)
	check("Invoke 429", req("Invoke", "429"), K)
	check("CreateFunction 201", req("CreateFunction", "201"), 3)
	check("PutFunctionConcurrency 200", req("PutFunctionConcurrency", "200"), 1)
}

// TestColdStartTrace checks that a cold start is one trace with a span per
// phase, whose id is the X-Ray Root id the function saw.
func TestColdStartTrace(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	e := startServer(t, func(c *serverConfig) { c.TracerProvider = tp })
	e.createProbe("traced")
	m, _ := e.invokeJSON("traced", map[string]any{"action": "env"})
	seen, _ := m["env"].(map[string]any)["_X_AMZN_TRACE_ID"].(string)
	tid, _, ok := invoke.ParseXRayTraceID(seen)
	if !ok {
		t.Fatalf("the function saw _X_AMZN_TRACE_ID=%q, not an X-Ray header with a Root id", seen)
	}
	var spans tracetest.SpanStubs
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() == tid {
			spans = append(spans, s)
		}
	}
	if len(spans) == 0 {
		t.Fatalf("no span has trace id %s (the function's %q); spans: %d", tid, seen, len(exp.GetSpans()))
	}
	byName := map[string][]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
	}
	var phases []invoke.Phase
	for _, cs := range e.srv.Scheduler().ColdStarts() {
		if cs.Function == "traced" {
			phases = cs.Phases
		}
	}
	if len(phases) == 0 {
		t.Fatal("the scheduler recorded no cold start for the function")
	}
	for _, want := range append([]string{invoke.SpanInvoke + " traced", invoke.SpanColdStart, invoke.SpanInvocation}, phaseNames(phases)...) {
		if n := len(byName[want]); n != 1 {
			t.Errorf("trace has %d spans named %q, want 1", n, want)
		}
	}
	if len(spans) != len(phases)+3 {
		t.Errorf("trace has %d spans, want %d (root, cold_start, invocation and %d phases)", len(spans), len(phases)+3, len(phases))
	}
	if t.Failed() {
		return
	}
	root := byName[invoke.SpanInvoke+" traced"][0]
	cs := byName[invoke.SpanColdStart][0]
	proc := byName["process"][0]
	if cs.Parent.SpanID() != root.SpanContext.SpanID() || byName[invoke.SpanInvocation][0].Parent.SpanID() != root.SpanContext.SpanID() {
		t.Error("cold_start and invocation are not children of the invocation's root span")
	}
	for _, p := range phases {
		s := byName[p.Name][0]
		parent := cs.SpanContext.SpanID()
		if strings.HasPrefix(p.Name, "sandbox_") {
			parent = proc.SpanContext.SpanID()
		}
		if s.Parent.SpanID() != parent {
			t.Errorf("span %s has the wrong parent", p.Name)
		}
		if got := s.EndTime.Sub(s.StartTime); got != p.D {
			t.Errorf("span %s lasts %v, the phase %v", p.Name, got, p.D)
		}
		if s.StartTime.Before(root.StartTime) || s.EndTime.After(root.EndTime) {
			t.Errorf("span %s [%v, %v] lies outside the invocation [%v, %v]", p.Name, s.StartTime, s.EndTime, root.StartTime, root.EndTime)
		}
	}

	// A warm invoke is a trace of its own without cold-start spans.
	exp.Reset()
	m, _ = e.invokeJSON("traced", map[string]any{"action": "env"})
	seen2, _ := m["env"].(map[string]any)["_X_AMZN_TRACE_ID"].(string)
	tid2, _, _ := invoke.ParseXRayTraceID(seen2)
	var names []string
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() == tid2 {
			names = append(names, s.Name)
		}
	}
	if tid2 == tid || len(names) != 2 {
		t.Errorf("warm invoke: trace %s (cold %s) has spans %v, want the root and invocation", tid2, tid, names)
	}
}

func phaseNames(ps []invoke.Phase) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	return out
}
