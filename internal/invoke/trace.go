package invoke

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of lambdaplane's spans.
const TracerName = "github.com/lambdaplane/lambdaplane/internal/invoke"

// Span names. A cold start's phases (namespace, runtime_api, process with
// its sandbox_* sub-phases, runtime_init) are spans named after the phase.
const (
	SpanInvoke     = "Invoke"
	SpanColdStart  = "cold_start"
	SpanInvocation = "invocation" // the runtime running the event (the first response, on a cold start)
)

// tracing emits one trace per invocation, after the fact, from the recorded
// timestamps. Its trace id is the X-Ray Root id of the invocation's trace
// header (the one the function sees in _X_AMZN_TRACE_ID), so the two
// correlate. A nil *tracing emits nothing.
type tracing struct {
	tracer   trace.Tracer
	shutdown func(context.Context) error
}

// newTracing uses o.TracerProvider when given (tests), else an OTLP/HTTP
// exporter when o.OTLPEndpoint is set, else nothing.
func newTracing(ctx context.Context, o Options) (*tracing, error) {
	if o.TracerProvider != nil {
		return &tracing{tracer: o.TracerProvider.Tracer(TracerName)}, nil
	}
	if o.OTLPEndpoint == "" {
		return nil, nil
	}
	u, err := otlpURL(o.OTLPEndpoint)
	if err != nil {
		return nil, err
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u))
	if err != nil {
		return nil, fmt.Errorf("OTLP exporter for %s: %w", u, err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "lambdaplane"))),
	)
	return &tracing{tracer: tp.Tracer(TracerName), shutdown: tp.Shutdown}, nil
}

// otlpURL accepts host:port or a URL; without a path it appends the OTLP
// traces path /v1/traces.
func otlpURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("OTLP endpoint %q: use host:port or http(s)://host:port[/v1/traces]", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

func (t *tracing) close() {
	if t == nil || t.shutdown == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = t.shutdown(ctx)
}

// ParseXRayTraceID extracts the Root id of an X-Ray trace header
// ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
// as an OpenTelemetry trace id (the 8 + 24 hex digits), and the Parent span
// id when present.
func ParseXRayTraceID(h string) (trace.TraceID, trace.SpanID, bool) {
	var tid trace.TraceID
	var sid trace.SpanID
	ok := false
	for _, part := range strings.Split(h, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Root":
			f := strings.Split(v, "-")
			if len(f) != 3 || f[0] != "1" || len(f[1]) != 8 || len(f[2]) != 24 {
				return tid, sid, false
			}
			b, err := hex.DecodeString(f[1] + f[2])
			if err != nil {
				return tid, sid, false
			}
			copy(tid[:], b)
			ok = tid.IsValid()
		case "Parent":
			if b, err := hex.DecodeString(v); err == nil && len(b) == 8 {
				copy(sid[:], b)
			}
		}
	}
	return tid, sid, ok
}

// parentContext makes the invocation's trace id the X-Ray Root id: the root
// span is started under a remote parent carrying it (the caller's Parent
// span when the header names one). Traces are always recorded: exporting is
// opt-in (--otlp-endpoint), so the header's Sampled flag is not consulted.
func parentContext(traceHeader string) context.Context {
	ctx := context.Background()
	tid, sid, ok := ParseXRayTraceID(traceHeader)
	if !ok {
		return ctx
	}
	if !sid.IsValid() {
		_, _ = rand.Read(sid[:])
	}
	return trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true,
	}))
}

// invocation emits the trace of one invocation that ran on e: a root span
// from start to end, for a cold start a cold_start span with one child per
// phase (sandbox_* phases under process), and the invocation span.
func (t *tracing) invocation(r *Request, cfg *control.Config, e *env, cold bool, start, end time.Time, resp *Response) {
	if t == nil || resp == nil { // nil: never delivered, retried elsewhere
		return
	}
	ctx, root := t.tracer.Start(parentContext(r.TraceID), SpanInvoke+" "+cfg.FunctionName,
		trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("faas.name", cfg.FunctionName),
			attribute.String("faas.version", cfg.Version),
			attribute.String("faas.invocation_id", r.RequestID),
			attribute.Bool("faas.coldstart", cold),
			attribute.String("faas.trigger", strings.ToLower(invocationType(r))),
			attribute.String("cloud.account.id", cfg.AccountID),
			attribute.String("aws.xray.trace_header", r.TraceID),
			attribute.String("lambdaplane.env_id", e.id),
		))
	invStart := start
	if cold && len(e.phases) > 0 {
		invStart = t.coldStart(ctx, cfg, e.phases, start)
	}
	_, inv := t.tracer.Start(ctx, SpanInvocation, trace.WithTimestamp(invStart),
		trace.WithAttributes(attribute.String("faas.invocation_id", r.RequestID)))
	if resp != nil && resp.FunctionError != "" {
		inv.SetStatus(codes.Error, resp.FunctionError)
		root.SetStatus(codes.Error, resp.FunctionError)
	}
	inv.End(trace.WithTimestamp(end))
	root.End(trace.WithTimestamp(end))
}

// coldStart emits the cold_start span and its phases; it returns when the
// environment became ready. Phases recorded without a start time (the
// sandbox's sub-phases) are laid end to end from their parent's start.
func (t *tracing) coldStart(ctx context.Context, cfg *control.Config, phases []Phase, fallback time.Time) time.Time {
	first, last := fallback, fallback
	if !phases[0].Start.IsZero() {
		first = phases[0].Start
	}
	for _, p := range phases {
		if !p.Start.IsZero() && p.Start.Add(p.D).After(last) {
			last = p.Start.Add(p.D)
		}
	}
	cctx, cs := t.tracer.Start(ctx, SpanColdStart, trace.WithTimestamp(first),
		trace.WithAttributes(attribute.String("lambdaplane.mode", coldStartMode(cfg))))
	var parent context.Context = cctx
	var cursor time.Time // next start of an untimed sub-phase
	for _, p := range phases {
		ps := p.Start
		pctx := cctx
		if strings.HasPrefix(p.Name, "sandbox_") {
			pctx = parent
			if ps.IsZero() {
				ps = cursor
			}
		}
		if ps.IsZero() {
			ps = first
		}
		sctx, sp := t.tracer.Start(pctx, p.Name, trace.WithTimestamp(ps),
			trace.WithAttributes(attribute.Float64("lambdaplane.phase_ms", float64(p.D.Microseconds())/1000)))
		sp.End(trace.WithTimestamp(ps.Add(p.D)))
		if p.Name == "process" {
			parent, cursor = sctx, ps
		} else if strings.HasPrefix(p.Name, "sandbox_") {
			cursor = ps.Add(p.D)
		}
	}
	cs.End(trace.WithTimestamp(last))
	return last
}
