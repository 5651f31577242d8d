package e2e

import (
	"context"
	"fmt"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/lambdaplane/lambdaplane/internal/sandbox"
)

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkColdStart measures the first invoke of new functions end to end
// (HTTP API with SigV4, hello-world aws-lambda-go function).
func BenchmarkColdStart(b *testing.B) {
	e := startServer(b, func(c *serverConfig) { c.PoolSize = 16 })
	n := b.N
	if n < 20 {
		n = 20
	}
	for i := 0; i < n; i++ {
		e.createProbe(fmt.Sprintf("cold-%d", i))
	}
	ctx := context.Background()
	var ds []time.Duration
	b.ResetTimer()
	for i := 0; i < n; i++ {
		t := time.Now()
		out, err := e.lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fmt.Sprintf("cold-%d", i)), Payload: []byte(`{"name":"x"}`)})
		if err != nil || out.FunctionError != nil {
			b.Fatalf("invoke: %v", err)
		}
		ds = append(ds, time.Since(t))
	}
	b.StopTimer()
	b.ReportMetric(ms(percentile(ds, 0.5)), "p50-ms")
	b.ReportMetric(ms(percentile(ds, 0.99)), "p99-ms")
	fmt.Printf("cold start over %d functions: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms\n", n, ms(percentile(ds, 0.5)), ms(percentile(ds, 0.9)), ms(percentile(ds, 0.99)))
}

// BenchmarkWarmInvoke measures warm invokes at concurrency 1.
func BenchmarkWarmInvoke(b *testing.B) {
	e := startServer(b)
	e.createProbe("warm")
	ctx := context.Background()
	in := &lambda.InvokeInput{FunctionName: aws.String("warm"), Payload: []byte(`{"name":"x"}`)}
	if _, err := e.lambda.Invoke(ctx, in); err != nil {
		b.Fatal(err)
	}
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		t := time.Now()
		if _, err := e.lambda.Invoke(ctx, in); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t))
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(ms(percentile(ds, 0.5)), "p50-ms")
	b.ReportMetric(float64(b.N)/el.Seconds(), "invokes/s")
	fmt.Printf("warm invoke c=1 over %d: p50 %.3f ms, p99 %.3f ms, %.0f invokes/s\n", b.N, ms(percentile(ds, 0.5)), ms(percentile(ds, 0.99)), float64(b.N)/el.Seconds())
}

// BenchmarkWarmParallel16 measures warm throughput at concurrency 16.
func BenchmarkWarmParallel16(b *testing.B) {
	e := startServer(b, func(c *serverConfig) { c.PoolSize = 16 })
	e.createProbe("warm16")
	ctx := context.Background()
	in := &lambda.InvokeInput{FunctionName: aws.String("warm16"), Payload: []byte(`{"name":"x"}`)}
	var done atomic.Int64
	b.SetParallelism(16 / max(1, runtimeProcs()))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.lambda.Invoke(ctx, in); err != nil {
				b.Error(err)
				return
			}
			done.Add(1)
		}
	})
	el := time.Since(start)
	b.ReportMetric(float64(done.Load())/el.Seconds(), "invokes/s")
	fmt.Printf("warm invoke c=16: %.0f invokes/s over %d\n", float64(done.Load())/el.Seconds(), done.Load())
}

// BenchmarkIdleEnvironmentMemory reports what an idle environment costs
// beyond the function's own process: the server's own memory (Go heap and
// stacks: goroutines, buffers, listeners) plus the kernel's (slab: network
// namespace, veth pair, routes, nft elements, cgroups, mounts; kernel stacks
// and page tables; shmem: the environment's tmpfs). The function's private
// pages are reported separately. Whole-machine counters like MemAvailable
// move too much with unrelated page cache to attribute a few hundred KB.
func BenchmarkIdleEnvironmentMemory(b *testing.B) {
	e := startServer(b, func(c *serverConfig) { c.PoolSize = 1 })
	const n = 100
	for i := 0; i < n; i++ {
		e.createProbe(fmt.Sprintf("idle-%d", i))
	}
	e.invokeJSON("idle-0", map[string]any{}) // warm the server's own paths
	settle := func() {
		runtime.GC()
		debug.FreeOSMemory()
		time.Sleep(300 * time.Millisecond)
	}
	type snap struct{ goKB, kernelKB, fnKB int }
	take := func() snap {
		settle()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return snap{int((ms.HeapInuse + ms.StackInuse) / 1024), kernelKB(), functionRSSKB(b, e.prefix)}
	}
	before := take()
	for i := 1; i < n; i++ {
		e.invokeJSON(fmt.Sprintf("idle-%d", i), map[string]any{})
	}
	after := take()
	envs := float64(n - 1)
	goMB := float64(after.goKB-before.goKB) / envs / 1024
	kMB := float64(after.kernelKB-before.kernelKB) / envs / 1024
	fnMB := float64(after.fnKB-before.fnKB) / envs / 1024
	b.ReportMetric(goMB+kMB, "MB/idle-env")
	fmt.Printf("idle environment overhead: %.2f MB (server %.2f MB + kernel %.2f MB); the function's own private memory %.2f MB (%d environments)\n", goMB+kMB, goMB, kMB, fnMB, n-1)
}

// kernelKB sums the kernel-side counters environments grow.
func kernelKB() int {
	b, _ := os.ReadFile("/proc/meminfo")
	total := 0
	for _, l := range strings.Split(string(b), "\n") {
		for _, k := range []string{"Slab:", "KernelStack:", "PageTables:", "Shmem:"} {
			if strings.HasPrefix(l, k) {
				v, _ := strconv.Atoi(strings.Fields(l)[1])
				total += v
			}
		}
	}
	return total
}

// functionRSSKB sums the private memory (Private_Clean + Private_Dirty of
// smaps_rollup; shared binary pages are cached once for all) of every
// process in the server's memory cgroups.
func functionRSSKB(b *testing.B, prefix string) int {
	cgs, err := sandbox.ListCgroups(prefix)
	if err != nil {
		b.Fatal(err)
	}
	total := 0
	for _, cg := range cgs {
		if !strings.Contains(cg, "/memory/") {
			continue
		}
		procs, _ := os.ReadFile(cg + "/cgroup.procs")
		for _, pid := range strings.Fields(string(procs)) {
			st, _ := os.ReadFile("/proc/" + pid + "/smaps_rollup")
			for _, l := range strings.Split(string(st), "\n") {
				if strings.HasPrefix(l, "Private_Clean:") || strings.HasPrefix(l, "Private_Dirty:") {
					v, _ := strconv.Atoi(strings.Fields(l)[1])
					total += v
				}
			}
		}
	}
	return total
}

func rssKB() int { return harness.RSSKB() }
