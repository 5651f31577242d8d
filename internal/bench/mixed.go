package bench

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// The mixed-load scenario reproduces an operator's report (issue 13): many
// clients invoking many functions while the functions' code and
// configuration keep changing. Each update supersedes the function's warm
// environments, so the figures of interest are the latency tail and how many
// environments the server keeps, during the load and after it.
var mixedLoadScenario = Scenario{
	Name: "mixed-load", Title: "Mixed load: invokes while code and configuration change",
	About: "C clients invoke F functions in a closed loop (each invoke goes to a function chosen at random) while one update per second changes a function's code (UpdateFunctionCode, alternating between two packages) or configuration (UpdateFunctionConfiguration, a new environment variable), round-robin over the functions. The load runs after a warm-up with the same clients and no updates; every invoke's client latency is a sample and the updates' latencies are a series of their own. Environments (idle and busy) and invokes in flight are sampled every 250 ms; after the load the environments are counted once it ends and 3 s later (superseded and surplus ones should be gone). Cold starts are the server's lambdaplane_environments_started_total over the load.",
	Quick: 60 * time.Second,
	Full:  6 * time.Minute,
	Run:   runMixedLoad,
	Plot:  plotMixed,
}

func runMixedLoad(ctx context.Context, e *Env, r *Result) error {
	nfn := 50
	clients := 200
	load := pick(e, 6*time.Second, 2*time.Minute)
	warmup := pick(e, 2*time.Second, 10*time.Second)
	names, err := e.CreateFunctions(ctx, "mixed", FnHello, nfn)
	defer cleanupFunctions(e, names)
	if err != nil {
		return err
	}
	zips := [2][]byte{}
	for i := range zips {
		if zips[i], err = zipVariant(e.Zips[FnHello], "variant "+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	if e.Server != nil && !e.Quick { // the quick suite has no time to wait
		waitPools(ctx, e)
	}
	r.Notes = append(r.Notes, fmt.Sprintf("%d clients, %d functions, one update per second, %s of load after %s of warm-up", clients, nfn, load, warmup))

	var (
		inFlight atomic.Int64
		record   atomic.Bool // false during the warm-up
		mu       sync.Mutex
		samples  []float64
		slowAt   = map[int]int{} // second of the load -> invokes over 1 s started in it
		t0       time.Time
		errs     int
		firstErr error
	)
	stop := make(chan struct{})
	stopAll := sync.OnceFunc(func() { close(stop) })
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 13))
			var mine []float64
			var mySlow []int
			var myErrs int
			var myFirst error
			for {
				select {
				case <-stop:
					mu.Lock()
					samples = append(samples, mine...)
					for _, sec := range mySlow {
						slowAt[sec]++
					}
					errs += myErrs
					if firstErr == nil {
						firstErr = myFirst
					}
					mu.Unlock()
					return
				default:
				}
				if ctx.Err() != nil {
					stopAll()
					continue
				}
				fn := names[rng.IntN(nfn)]
				inFlight.Add(1)
				rec := record.Load()
				at := time.Now()
				d, _, err := e.Invoke(ctx, fn, helloEvent)
				inFlight.Add(-1)
				if !rec || !record.Load() {
					continue
				}
				if err != nil {
					myErrs++
					if myFirst == nil {
						myFirst = err
					}
					continue
				}
				mine = append(mine, msOf(d))
				if d > time.Second {
					mySlow = append(mySlow, int(at.Sub(t0).Seconds()))
				}
			}
		}(uint64(c))
	}
	// The warm-up: every client's function gets its environments.
	select {
	case <-time.After(warmup):
	case <-ctx.Done():
	}
	envs := func() int {
		if e.Server != nil {
			return e.Server.Scheduler().Stats().Environments
		}
		mf, err := e.Scrape(ctx)
		if err != nil {
			return -1
		}
		return int(CounterSum(mf, invoke.MetricEnvironments, nil))
	}
	// Environments started, and healthy ones destroyed by reason.
	reasons := []string{"superseded", "surplus", "idle_timeout", "memory_budget"}
	counts := func() map[string]float64 {
		mf, err := e.Scrape(ctx)
		if err != nil {
			return nil
		}
		m := map[string]float64{"started": CounterSum(mf, invoke.MetricEnvStarted, nil)}
		for _, r := range reasons {
			m[r] = CounterSum(mf, invoke.MetricEnvEvicted, map[string]string{"reason": r})
		}
		return m
	}
	before := counts()
	warmEnvs := envs()
	t0 = time.Now()
	record.Store(true)

	// Environments and in-flight invokes, every 250 ms.
	tl, envS, flS := r.series("time", "s", 0), r.series("environments", "count", 0), r.series("invokes in flight", "count", 0)
	sampleDone := make(chan struct{})
	go func() {
		defer close(sampleDone)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			tl.Samples = append(tl.Samples, round2(time.Since(t0).Seconds()))
			envS.Samples = append(envS.Samples, float64(envs()))
			flS.Samples = append(flS.Samples, float64(inFlight.Load()))
		}
	}()

	// One update per second, round-robin; even ones change the code,
	// odd ones the configuration.
	upd := r.series("update", "ms", 0)
	var updMu sync.Mutex
	var updErrs int
	var updFirst error
	var updWG sync.WaitGroup
	tick := time.NewTicker(time.Second)
	deadline := time.After(load)
	variant := make([]int, nfn)
loop:
	for i := 0; ; i++ {
		select {
		case <-tick.C:
		case <-deadline:
			break loop
		case <-ctx.Done():
			break loop
		}
		k := i % nfn
		code := i%2 == 0
		if code {
			variant[k] ^= 1
		}
		zip := zips[variant[k]]
		// Each update on its own goroutine: a slow one does not lower the rate.
		updWG.Add(1)
		go func(fn string, i int) {
			defer updWG.Done()
			t := time.Now()
			var err error
			if code {
				_, err = e.Lambda.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String(fn), ZipFile: zip})
			} else {
				_, err = e.Lambda.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
					FunctionName: aws.String(fn),
					Environment:  &types.Environment{Variables: map[string]string{"BENCH_UPDATE": strconv.Itoa(i)}},
				})
			}
			d := msOf(time.Since(t))
			updMu.Lock()
			defer updMu.Unlock()
			if err != nil {
				updErrs++
				if updFirst == nil {
					updFirst = err
				}
				return
			}
			upd.Samples = append(upd.Samples, d)
		}(names[k], i)
	}
	updWG.Wait()
	tick.Stop()
	stopAll()
	wg.Wait()
	<-sampleDone
	el := time.Since(t0)
	envsEnd := envs()
	after := counts()
	time.Sleep(3 * time.Second)
	envsAfter := envs()

	s := r.series("invoke", "ms", 0)
	s.Samples, s.Errors = samples, errs
	upd.Errors = updErrs
	// Keep the invoke latencies first: they are the scenario's headline.
	r.Series = append([]*Series{s}, r.Series[:len(r.Series)-1]...)
	if firstErr != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("%d invoke errors, first: %v", errs, firstErr))
	}
	if updFirst != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("%d update errors, first: %v", updErrs, updFirst))
	}
	peakEnvs, peakFlight := 0.0, 0.0
	for i := range envS.Samples {
		peakEnvs = max(peakEnvs, envS.Samples[i])
		peakFlight = max(peakFlight, flS.Samples[i])
	}
	r.value("invoke p50", round2(Quantile(samples, .5)), "ms")
	r.value("invoke p99", round2(Quantile(samples, .99)), "ms")
	r.value("invoke max", round2(Quantile(samples, 1)), "ms")
	r.value("invokes", float64(len(samples)), "")
	r.value("invoke errors", float64(errs), "")
	r.value("throughput", round2(float64(len(samples))/el.Seconds()), "invokes/s")
	r.value("updates", float64(len(upd.Samples)), "")
	r.value("update p99", round2(Quantile(upd.Samples, .99)), "ms")
	r.value("peak invokes in flight", peakFlight, "")
	r.value("environments after warm-up", float64(warmEnvs), "")
	r.value("peak environments", peakEnvs, "")
	if peakFlight > 0 {
		r.value("peak environments per peak invoke in flight", round2(peakEnvs/peakFlight), "")
	}
	r.value("environments when the load ended", float64(envsEnd), "")
	r.value("environments 3 s after the load", float64(envsAfter), "")
	if before != nil && after != nil {
		r.value("cold starts during the load", after["started"]-before["started"], "")
		for _, why := range reasons {
			r.value("environments destroyed during the load: "+why, after[why]-before[why], "")
		}
	}
	if e.Server != nil {
		mixedColdStarts(e, r, names, t0)
	}
	if len(slowAt) > 0 {
		secs := make([]int, 0, len(slowAt))
		for k := range slowAt {
			secs = append(secs, k)
		}
		sort.Ints(secs)
		var parts []string
		for _, k := range secs {
			parts = append(parts, fmt.Sprintf("%ds:%d", k, slowAt[k]))
		}
		e.Log.Info("bench: mixed load: invokes over 1 s by the second of the load they started in", "seconds", strings.Join(parts, " "))
	}
	e.Log.Info("bench: mixed load",
		"p50_ms", round2(Quantile(samples, .5)), "p99_ms", round2(Quantile(samples, .99)), "max_ms", round2(Quantile(samples, 1)),
		"invokes", len(samples), "errors", errs, "updates", len(upd.Samples),
		"peak_envs", peakEnvs, "peak_in_flight", peakFlight, "envs_end", envsEnd, "envs_after_3s", envsAfter,
		"cold_starts", after["started"]-before["started"], "superseded", after["superseded"]-before["superseded"], "surplus", after["surplus"]-before["surplus"])
	return ctx.Err()
}

// zipVariant returns the package zipped with one more file, tag: the same
// function, with a different CodeSha256.
func zipVariant(zipped []byte, tag string) ([]byte, error) {
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		if err := zw.Copy(f); err != nil {
			return nil, err
		}
	}
	w, err := zw.Create("variant.txt")
	if err != nil {
		return nil, err
	}
	if _, err := w.Write([]byte(tag + "\n")); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// plotMixed: the latency distribution of invokes and updates, and the
// environments and invokes in flight over the load.
func plotMixed(dir string, r *Result) ([]string, error) {
	var out []string
	p := newPlot(r.Title, "latency (ms)", "fraction ≤ x")
	var args []any
	for _, s := range r.Series {
		if s.Unit == "ms" && len(s.Samples) > 0 {
			args = append(args, s.Name, cdf(s.Samples))
		}
	}
	if len(args) > 0 {
		if err := plotutil.AddLines(p, args...); err != nil {
			return nil, err
		}
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		f, err := save(p, dir, r.Name+"-latency", 6*vg.Inch, 4*vg.Inch)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	if over := xyAgainst(r, "time", "environments", "invokes in flight"); len(over) > 0 {
		p := newPlot("Environments during the mixed load", "time into the load (s)", "count")
		if err := plotutil.AddLines(p, over...); err != nil {
			return nil, err
		}
		f, err := save(p, dir, r.Name+"-environments", 6*vg.Inch, 4*vg.Inch)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// mixedColdStarts notes where the load's cold starts spent their time:
// p50 / p99 / max of each phase (ms) the scheduler recorded.
func mixedColdStarts(e *Env, r *Result, names []string, since time.Time) {
	css, _ := coldStartsOf(e, names)
	by := map[string][]float64{}
	var order []string
	n := 0
	for _, cs := range css {
		if cs.At.Before(since) {
			continue
		}
		n++
		var total float64
		for _, p := range cs.Phases {
			if _, seen := by[p.Name]; !seen {
				order = append(order, p.Name)
			}
			by[p.Name] = append(by[p.Name], msOf(p.D))
			if isTop(p.Name) {
				total += msOf(p.D)
			}
		}
		by["total"] = append(by["total"], total)
	}
	if n == 0 {
		return
	}
	order = append(order, "total")
	var parts []string
	for _, ph := range order {
		xs := by[ph]
		parts = append(parts, fmt.Sprintf("%s %s/%s/%s", ph, num(Quantile(xs, .5)), num(Quantile(xs, .99)), num(Quantile(xs, 1))))
	}
	note := fmt.Sprintf("%d cold starts during the load, p50/p99/max ms per phase: %s", n, strings.Join(parts, ", "))
	e.Log.Info("bench: " + note)
	r.Notes = append(r.Notes, note)
}
