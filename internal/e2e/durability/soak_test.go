package durability

import (
	"bufio"
	"context"
	"fmt"
	"github.com/lambdaplane/lambdaplane/internal/e2e/harness"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
)

// soakCycles is the number of create/invoke/delete cycles TestSoakDeletedFunctionsFreed
// measures: LP_SOAK_CYCLES, default 500 (an operator's soak ran 10,000; 1,000 measured
// 300 bytes per cycle).
func soakCycles(t *testing.T) int {
	n := 500
	if s := os.Getenv("LP_SOAK_CYCLES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 100 {
			t.Fatalf("LP_SOAK_CYCLES=%q: want a number >= 100", s)
		}
		n = v
	}
	return n
}

// heapAfterGC is the live heap of this process (server included: it runs
// in-process) once garbage is collected. The caller has stopped the load
// first: the embedded store's block caches (up to 8 MiB each) are given
// back 10 s after their last write, and would otherwise show as steps.
func heapAfterGC() uint64 {
	time.Sleep(12 * time.Second)
	runtime.GC()
	runtime.GC() // sync.Pools are dropped over two collections
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// metricsLines counts the sample lines of /metrics and those naming a
// function whose name starts with prefix.
func metricsLines(t *testing.T, e *harness.Env, prefix string) (total, naming int) {
	t.Helper()
	resp, err := http.Get(e.Srv.MetricsEndpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		total++
		if strings.Contains(l, `function="`+prefix) {
			naming++
		}
	}
	return total, naming
}

// slope fits y = a + b·x by least squares and returns b.
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

// TestSoakDeletedFunctionsFreed: create, invoke (a cold start) and delete
// functions one after the other while another function takes 50 warm
// invokes a second. What a deleted function had — metric series, cache
// entries, books, log ledger, extracted code — is freed: the live heap
// (after GC, sampled along the way with the load paused, less the bounded
// history of the last 4,096 cold starts) grows by less than
// soakMaxPerCycle per cycle, /metrics has no more series than before and
// none names a deleted function, and no extracted tree is left but the
// warm function's.
func TestSoakDeletedFunctionsFreed(t *testing.T) {
	// A deleted function's metric series alone cost ~10 KB (the operator's
	// soak: 154 -> 317 MB RSS over 10,000 cycles, ~16 KB a cycle); its
	// cache entries, books and log ledger a few hundred bytes. What stays
	// is bounded: the store's delete marker (~150 bytes, purged after 30
	// min) and its subject-match cache (1,024 subjects); a step of the
	// heap (a map doubling) spreads over the cycles.
	const soakMaxPerCycle = 2048.0
	cycles := soakCycles(t)
	e := harness.Start(t)
	ctx := context.Background()

	e.CreateProbe("soak-warm")
	e.InvokeJSON("soak-warm", map[string]any{"name": "warm"})
	var warm, warmErrs atomic.Int64
	var firstErr atomic.Value
	var load sync.Mutex // held by each warm invoke; the sampler holds it to pause them
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // 50 warm invokes a second, alongside
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			load.Lock()
			out, err := e.Lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("soak-warm"), Payload: []byte(`{"name":"w"}`)})
			load.Unlock()
			if err == nil && out.FunctionError != nil {
				err = fmt.Errorf("function error %s: %s", *out.FunctionError, out.Payload)
			}
			if err != nil {
				warmErrs.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				continue
			}
			warm.Add(1)
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	cycle := func(i int) {
		name := fmt.Sprintf("soakc-%d", i)
		e.CreateProbe(name)
		e.InvokeJSON(name, map[string]any{"name": name})
		if _, err := e.Lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name)}); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
	}
	// Warm up: pools, caches and buffers reach their working size.
	for i := range 100 {
		cycle(-1 - i)
	}
	seriesBefore, _ := metricsLines(t, e, "soakc-")
	var xs, ys, rss []float64
	// LP_SOAK_HEAPPROF=DIR writes heap profiles at the first and last
	// sample (go tool pprof -diff_base DIR/heap-0.pprof DIR/heap-N.pprof).
	profDir := os.Getenv("LP_SOAK_HEAPPROF")
	if profDir != "" {
		runtime.MemProfileRate = 512
		defer func() { runtime.MemProfileRate = 512 * 1024 }()
	}
	sample := func(done int) {
		load.Lock()
		defer load.Unlock()
		h := heapAfterGC() - coldStartHistoryBytes(e)
		if profDir != "" && (done == 0 || done == cycles) {
			if f, err := os.Create(filepath.Join(profDir, fmt.Sprintf("heap-%d.pprof", done))); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
		xs, ys, rss = append(xs, float64(done)), append(ys, float64(h)), append(rss, float64(harness.RSSKB())/1024)
		t.Logf("after %d cycles: heap %.1f MiB (cold-start history excluded), RSS %.1f MiB", done, float64(h)/(1<<20), rss[len(rss)-1])
	}
	sample(0)
	step := cycles / 4
	start := time.Now()
	for i := 1; i <= cycles; i++ {
		cycle(i)
		if i%step == 0 || i == cycles {
			sample(i)
		}
	}
	per := slope(xs, ys)
	seriesAfter, naming := metricsLines(t, e, "soakc-")
	t.Logf("%d cycles in %v; %d warm invokes alongside; heap growth %.0f bytes/cycle (least squares over %d samples); RSS after GC %.1f -> %.1f MiB; /metrics sample lines %d -> %d",
		cycles, time.Since(start).Round(time.Second), warm.Load(), per, len(xs), rss[0], rss[len(rss)-1], seriesBefore, seriesAfter)

	if n := warmErrs.Load(); n > 0 {
		t.Errorf("%d warm invokes failed, first: %v", n, firstErr.Load())
	}
	if naming != 0 {
		t.Errorf("/metrics has %d sample lines naming deleted functions", naming)
	}
	// Histogram buckets of a phase seen for the first time may add a few.
	if seriesAfter > seriesBefore+40 {
		t.Errorf("/metrics grew from %d to %d sample lines over %d cycles", seriesBefore, seriesAfter, cycles)
	}
	if per > soakMaxPerCycle {
		t.Errorf("live heap grows %.0f bytes per create/invoke/delete cycle (bound %.0f)", per, soakMaxPerCycle)
	}
	trees, _ := filepath.Glob(filepath.Join(e.Data, "code", "*"))
	if len(trees) > 1 {
		t.Errorf("extracted code trees left: %d (want only the warm function's): %v", len(trees), trees)
	}
}

// coldStartHistoryBytes is about what the scheduler's ring of the last
// 4,096 cold starts holds (bounded; it fills over the first 4,096 cold
// starts, which a soak of fewer cycles would take for growth).
func coldStartHistoryBytes(e *harness.Env) uint64 {
	var n uint64
	for _, c := range e.Srv.Scheduler().ColdStarts() {
		n += uint64(unsafe.Sizeof(c)) + uint64(cap(c.Phases))*uint64(unsafe.Sizeof(invoke.Phase{}))
	}
	return n
}
