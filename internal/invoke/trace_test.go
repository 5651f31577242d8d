package invoke

import (
	"context"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestParseXRayTraceID(t *testing.T) {
	tid, sid, ok := ParseXRayTraceID("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
	if !ok || tid.String() != "5759e988bd862e3fe1be46a994272793" || sid.String() != "53995c3f42cd8ad8" {
		t.Errorf("got %s %s %v", tid, sid, ok)
	}
	for _, bad := range []string{"", "Root=1-xyz", "Root=2-5759e988-bd862e3fe1be46a994272793", "Root=1-00000000-000000000000000000000000", "Parent=53995c3f42cd8ad8"} {
		if _, _, ok := ParseXRayTraceID(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestOTLPURL(t *testing.T) {
	for in, want := range map[string]string{
		"localhost:4318":                    "http://localhost:4318/v1/traces",
		"https://collector:4318":            "https://collector:4318/v1/traces",
		"http://collector:4318/custom/path": "http://collector:4318/custom/path",
	} {
		if got, err := otlpURL(in); err != nil || got != want {
			t.Errorf("otlpURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := otlpURL("ftp://x"); err == nil {
		t.Error("ftp accepted")
	}
}

// TestInvocationSpans emits the trace of a synthetic cold start: a span per
// phase with the recorded timestamps, sandbox sub-phases under process, the
// X-Ray Root as trace id.
func TestInvocationSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	tr := &tracing{tracer: tp.Tracer(TracerName)}
	t0 := time.Now()
	ms := time.Millisecond
	e := &env{id: "e1", phases: []Phase{
		{Name: "namespace", Start: t0, D: ms},
		{Name: "runtime_api", Start: t0.Add(ms), D: ms},
		{Name: "process", Start: t0.Add(2 * ms), D: 4 * ms},
		{Name: "sandbox_cgroup", D: ms},
		{Name: "sandbox_exec", D: 2 * ms},
		{Name: "runtime_init", Start: t0.Add(6 * ms), D: 3 * ms},
	}}
	cfg := &control.Config{AccountID: "123456789012", FunctionName: "f", Version: "$LATEST"}
	r := &Request{RequestID: "r1", InvocationType: RequestResponse, TraceID: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"}
	tr.invocation(r, cfg, e, true, t0, t0.Add(12*ms), &Response{})
	spans := exp.GetSpans()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	if len(spans) != 9 {
		t.Fatalf("%d spans, want 9", len(spans))
	}
	by := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		if s.SpanContext.TraceID().String() != "5759e988bd862e3fe1be46a994272793" {
			t.Errorf("span %s trace id %s", s.Name, s.SpanContext.TraceID())
		}
		by[s.Name] = s
	}
	if by["Invoke f"].Parent.SpanID().String() != "53995c3f42cd8ad8" {
		t.Errorf("root's parent %s, want the X-Ray Parent", by["Invoke f"].Parent.SpanID())
	}
	if by["sandbox_exec"].Parent.SpanID() != by["process"].SpanContext.SpanID() {
		t.Error("sandbox_exec is not under process")
	}
	if !by["sandbox_exec"].StartTime.Equal(t0.Add(3*ms)) || !by["invocation"].StartTime.Equal(t0.Add(9*ms)) {
		t.Errorf("sandbox_exec starts %v, invocation %v", by["sandbox_exec"].StartTime.Sub(t0), by["invocation"].StartTime.Sub(t0))
	}
	if !by["cold_start"].EndTime.Equal(t0.Add(9 * ms)) {
		t.Errorf("cold_start ends at %v", by["cold_start"].EndTime.Sub(t0))
	}
}
