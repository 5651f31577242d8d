package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

var helloCode = map[string]map[string]string{
	"python3.11": {"app.py": "def handler(event, context):\n    return {'hello': event.get('name')}\n"},
	"nodejs20.x": {"app.js": "exports.handler = async (event) => ({ hello: event.name });\n"},
}

// BenchmarkRuntimeColdStart measures the first invoke of new hello-world
// functions end to end through the API (SigV4, HTTP, scheduler, sandbox,
// interpreter start, runtime interface client), and prints the phases the
// scheduler recorded for those cold starts: sandbox phases vs the
// interpreter's start (runtime_init: process start until the first /next).
func BenchmarkRuntimeColdStart(b *testing.B) {
	for _, rt := range []string{"python3.11", "nodejs20.x"} {
		b.Run(rt, func(b *testing.B) {
			e := startServer(b, func(c *serverConfig) { c.PoolSize = 16 })
			n := max(b.N, 30)
			zip := zipOf(b, helloCode[rt])
			prefix := strings.NewReplacer(".", "", "x", "").Replace(rt)
			names := map[string]bool{}
			for i := 0; i < n; i++ {
				name := fmt.Sprintf("%s-cold-%d", prefix, i)
				createFn(b, e, name, rt, "app.handler", zip)
				names[name] = true
			}
			ctx := context.Background()
			var ds []time.Duration
			b.ResetTimer()
			for i := 0; i < n; i++ {
				t := time.Now()
				out, err := e.lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fmt.Sprintf("%s-cold-%d", prefix, i)), Payload: []byte(`{"name":"x"}`)})
				if err != nil || out.FunctionError != nil {
					b.Fatalf("invoke: %v %s", err, out.Payload)
				}
				ds = append(ds, time.Since(t))
				// Let the pool refill its namespaces as it would between
				// independent cold starts.
				time.Sleep(20 * time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(ms(percentile(ds, 0.5)), "p50-ms")
			fmt.Printf("%s cold start end to end over %d functions: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms\n",
				rt, n, ms(percentile(ds, 0.5)), ms(percentile(ds, 0.9)), ms(percentile(ds, 0.99)))
			printPhases(e, names)

			// Warm invokes of one of them at concurrency 1.
			in := &lambda.InvokeInput{FunctionName: aws.String(prefix + "-cold-0"), Payload: []byte(`{"name":"x"}`)}
			var warm []time.Duration
			for i := 0; i < 500; i++ {
				t := time.Now()
				if out, err := e.lambda.Invoke(ctx, in); err != nil || out.FunctionError != nil {
					b.Fatal(err)
				}
				warm = append(warm, time.Since(t))
			}
			b.ReportMetric(ms(percentile(warm, 0.5)), "warm-p50-ms")
			fmt.Printf("%s warm invoke end to end over %d: p50 %.3f ms, p99 %.3f ms\n", rt, len(warm), ms(percentile(warm, 0.5)), ms(percentile(warm, 0.99)))
		})
	}
}

// printPhases prints the p50 of each cold-start phase the scheduler
// recorded for the named functions.
func printPhases(e *env, names map[string]bool) {
	byPhase := map[string][]time.Duration{}
	var order []string
	for _, cs := range e.srv.Scheduler().ColdStarts() {
		if !names[cs.Function] {
			continue
		}
		for _, p := range cs.Phases {
			if _, ok := byPhase[p.Name]; !ok {
				order = append(order, p.Name)
			}
			byPhase[p.Name] = append(byPhase[p.Name], p.D)
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		return strings.HasPrefix(order[j], "sandbox_") && !strings.HasPrefix(order[i], "sandbox_")
	})
	var b strings.Builder
	for _, name := range order {
		fmt.Fprintf(&b, "  %-28s p50 %7.2f ms  p90 %7.2f ms  (n=%d)\n", name, ms(percentile(byPhase[name], 0.5)), ms(percentile(byPhase[name], 0.9)), len(byPhase[name]))
	}
	fmt.Print("cold-start phases (scheduler; sandbox_* are inside the process phase):\n" + b.String())
}
