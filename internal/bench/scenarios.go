package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/invoke"
)

var helloEvent = []byte(`{"name":"bench"}`)

// cleanupFunctions deletes a scenario's functions when it ends, on a context
// of its own (the scenario's may have expired).
func cleanupFunctions(e *Env, names []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.DeleteFunctions(ctx, names); err != nil {
		e.Log.Warn("bench: deleting functions", "err", err)
	}
}

// firstInvokes invokes each function once, in order, and returns the
// latencies (ms). In-process it first waits for full pools and a quiet
// machine, as the burst levels do, so a run does not measure the previous
// scenario's teardown. It stops at the first error or when ctx ends.
func firstInvokes(ctx context.Context, e *Env, names []string, what string) ([]float64, error) {
	if e.Server != nil {
		waitPools(ctx, e)
	}
	p := &progress{e: e, what: what, total: len(names)}
	out := make([]float64, 0, len(names))
	for i, n := range names {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		d, _, err := e.Invoke(ctx, n, helloEvent)
		if err != nil {
			return out, err
		}
		out = append(out, msOf(d))
		p.step(i + 1)
	}
	return out, nil
}

var coldScenario = Scenario{
	Name: "cold-start", Title: "Cold start (first invoke of a new function)",
	About: "Each sample is the client-side latency of the first Invoke of a freshly created hello-world function (aws-lambda-go, provided.al2023, 128 MB), one at a time, through the HTTP API with SigV4. In-process the run starts with full pools on a quiet machine.",
	Run: func(ctx context.Context, e *Env, r *Result) error {
		n := pick(e, 10, 100)
		names, err := e.CreateFunctions(ctx, "cold", FnHello, n)
		defer cleanupFunctions(e, names)
		if err != nil {
			return err
		}
		s := r.series("cold start", "ms", 0)
		s.Samples, err = firstInvokes(ctx, e, names, "cold starts")
		return err
	},
	Plot: plotCDF,
}

// Top-level cold-start phases, in order; "first_response" is the client's
// latency minus them (the invocation itself plus the API round trip).
var topPhases = []string{"namespace", "runtime_api", "process", "runtime_init"}

const firstResponse = "first_response"

var phasesScenario = Scenario{
	Name: "cold-start-phases", Title: "Cold-start phases",
	About: "Per cold start, the scheduler's recorded phases: namespace (take a pooled network namespace), runtime_api (open the Runtime API inside it), process (start the sandbox; its sandbox_* sub-phases break it down), runtime_init (process start until the runtime's first /next), and first_response (client latency minus those: the first invocation plus the API round trip). In-process every cold start is a sample (Scheduler.ColdStarts); against a remote server the means come from lambdaplane_cold_start_phase_seconds on /metrics.",
	Run: func(ctx context.Context, e *Env, r *Result) error {
		n := pick(e, 5, 50)
		names, err := e.CreateFunctions(ctx, "phase", FnHello, n)
		defer cleanupFunctions(e, names)
		if err != nil {
			return err
		}
		before, err := e.Scrape(ctx)
		if err != nil {
			return err
		}
		lat, err := firstInvokes(ctx, e, names, "cold starts")
		if err != nil {
			return err
		}
		if e.Server == nil {
			after, err := e.Scrape(ctx)
			if err != nil {
				return err
			}
			b, a := invoke.MetricColdPhase, invoke.MetricColdPhase
			hb, ha := HistogramSums(before, b, "phase"), HistogramSums(after, a, "phase")
			var top float64
			for _, ph := range sortedPhases(ha) {
				d := ha[ph][1] - hb[ph][1]
				if d <= 0 {
					continue
				}
				mean := (ha[ph][0] - hb[ph][0]) / d * 1000
				r.series(ph, "ms", 0).Samples = []float64{mean}
				if isTop(ph) {
					top += mean
				}
			}
			r.series(firstResponse, "ms", 0).Samples = []float64{Mean(lat) - top}
			r.Notes = append(r.Notes, "remote target: one sample per phase, the mean over the run from /metrics")
			return nil
		}
		byPhase := map[string][]float64{}
		var order []string
		var first []float64
		css, idx := coldStartsOf(e, names)
		for k, cs := range css {
			i := idx[k]
			var top float64
			for _, p := range cs.Phases {
				if _, seen := byPhase[p.Name]; !seen {
					order = append(order, p.Name)
				}
				byPhase[p.Name] = append(byPhase[p.Name], msOf(p.D))
				if isTop(p.Name) {
					top += msOf(p.D)
				}
			}
			first = append(first, lat[i]-top)
		}
		if len(first) == 0 {
			return errors.New("the scheduler recorded none of the cold starts")
		}
		for _, ph := range order {
			r.series(ph, "ms", 0).Samples = byPhase[ph]
		}
		r.series(firstResponse, "ms", 0).Samples = first
		return nil
	},
	Plot: plotPhases,
}

func isTop(phase string) bool { return !strings.HasPrefix(phase, "sandbox_") }

func sortedPhases(m map[string][2]float64) []string {
	rank := func(p string) int {
		for i, t := range topPhases {
			if t == p {
				return i
			}
		}
		if strings.HasPrefix(p, "sandbox_") {
			return 100
		}
		return 50
	}
	var out []string
	for p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if rank(out[i]) != rank(out[j]) {
			return rank(out[i]) < rank(out[j])
		}
		return out[i] < out[j]
	})
	return out
}

var burstScenario = Scenario{
	Name: "burst", Title: "Burst of simultaneous first invokes",
	About: "For each level L, L new functions are invoked for the first time all at once (released together after their goroutines are ready); each sample is one invoke's client latency. Errors (throttles, failures) are counted, not sampled. In-process, each level starts once the server's pools (ready namespaces, started inits; sizes in the header) are full again and the machine is quiet (the previous level's teardown done); beyond the pools, namespaces and inits are built on demand. The machine's CPU time per cold start (all processes and the kernel, from /proc/stat) is reported per level.",
	Quick: 60 * time.Second,
	Run: func(ctx context.Context, e *Env, r *Result) error {
		levels := pick(e, []int{1, 10, 50}, []int{1, 10, 50, 100, 200})
		for _, l := range levels {
			if err := burstLevel(ctx, e, r, l); err != nil {
				return err
			}
		}
		return nil
	},
	Plot: plotBoxes,
}

func burstLevel(ctx context.Context, e *Env, r *Result, l int) error {
	names, err := e.CreateFunctions(ctx, fmt.Sprintf("burst%d", l), FnHello, l)
	defer cleanupFunctions(e, names)
	if err != nil {
		return err
	}
	if e.Server != nil {
		waitPools(ctx, e)
	}
	e.Log.Info("bench: progress", "step", "burst", "simultaneous", l)
	s := r.series(fmt.Sprintf("%d simultaneous", l), "ms", float64(l))
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	ready := make(chan struct{})
	for _, n := range names {
		wg.Add(1)
		go func(n string) {
			defer wg.Done()
			<-ready
			d, _, err := e.Invoke(ctx, n, helloEvent)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.Errors++
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			s.Samples = append(s.Samples, msOf(d))
		}(n)
	}
	cpu0 := machineCPU()
	close(ready)
	wg.Wait()
	if cpu1 := machineCPU(); cpu0 > 0 && cpu1 > cpu0 {
		r.value(fmt.Sprintf("%d simultaneous: machine CPU per cold start", l), round2((cpu1-cpu0)/float64(l)), "ms")
	}
	if e.Server != nil {
		burstPhases(e, r, l, names)
	}
	if firstErr != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("%d simultaneous: %d errors, first: %v", l, s.Errors, firstErr))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

var warmScenario = Scenario{
	Name: "warm", Title: "Warm invokes",
	About: "One function. Latency: sequential invokes on a warm environment (concurrency 1). Throughput: C clients invoke in a closed loop for a fixed time after C environments were warmed; every invoke's latency is a sample. The warm-floor scenario runs the same client and function with no platform in between.",
	Quick: 60 * time.Second,
	Run: func(ctx context.Context, e *Env, r *Result) error {
		names, err := e.CreateFunctions(ctx, "warm", FnHello, 1)
		defer cleanupFunctions(e, names)
		if err != nil {
			return err
		}
		fn := names[0]
		invoke := func(ctx context.Context) (time.Duration, error) {
			d, _, err := e.Invoke(ctx, fn, helloEvent)
			return d, err
		}
		return warmRuns(ctx, e, r, invoke, []int{1, 4, 16, 64})
	},
	Plot: plotWarm,
}

// warmRuns measures sequential latency, then closed-loop throughput at
// each concurrency.
func warmRuns(ctx context.Context, e *Env, r *Result, invoke func(context.Context) (time.Duration, error), concurrency []int) error {
	if _, err := invoke(ctx); err != nil {
		return err
	}
	n := pick(e, 200, 2000)
	s := r.series("latency c=1", "ms", 1)
	p := &progress{e: e, what: "warm invokes", total: n}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		d, err := invoke(ctx)
		if err != nil {
			return err
		}
		s.Samples = append(s.Samples, msOf(d))
		p.step(i + 1)
	}
	dur := pick(e, 2*time.Second, 10*time.Second)
	for _, c := range concurrency {
		if err := warmThroughput(ctx, e, r, invoke, c, dur); err != nil {
			return err
		}
	}
	return nil
}

func warmThroughput(ctx context.Context, e *Env, r *Result, invoke func(context.Context) (time.Duration, error), c int, dur time.Duration) error {
	// Warm c environments: c simultaneous invokes.
	if err := parallel(ctx, c, c, func(ctx context.Context, _ int) error {
		_, err := invoke(ctx)
		return err
	}); err != nil {
		return err
	}
	e.Log.Info("bench: progress", "step", "warm throughput", "concurrency", c, "for", dur)
	s := r.series(fmt.Sprintf("throughput c=%d", c), "ms", float64(c))
	var mu sync.Mutex
	var errs atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []float64
			for i := 0; i < 1_000_000 && time.Now().Before(stop) && ctx.Err() == nil; i++ {
				d, err := invoke(ctx)
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				mine = append(mine, msOf(d))
			}
			mu.Lock()
			s.Samples = append(s.Samples, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	s.Errors = int(errs.Load())
	if s.Errors > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("c=%d: %d errors, first: %v", c, s.Errors, firstErr.Load()))
	}
	r.value(fmt.Sprintf("throughput c=%d", c), round2(float64(len(s.Samples))/el.Seconds()), "invokes/s")
	return ctx.Err()
}

var egressScenario = Scenario{
	Name: "egress", Title: "TCP connect from a function (no VPC)",
	About: "The tcpconnect function opens a TCP connection to an address in the bench's own \"internet\" namespace (203.0.113.1:80, reached through the service router's masquerade); connect is the time the function measured, invoke the client latency. The VPC scenarios will run the same function against a peer inside a VPC.",
	Run: func(ctx context.Context, e *Env, r *Result) error {
		if e.Egress == "" {
			r.Skipped = "no reachable address: pass --egress-addr HOST:PORT for a remote server"
			return nil
		}
		names, err := e.CreateFunctions(ctx, "egress", FnTCPConnect, 1)
		defer cleanupFunctions(e, names)
		if err != nil {
			return err
		}
		ev, _ := json.Marshal(map[string]any{"addr": e.Egress, "timeoutMs": 3000})
		connect, inv := r.series("connect", "ms", 0), r.series("invoke", "ms", 0)
		n := pick(e, 20, 200)
		for i := 0; i < n && ctx.Err() == nil; i++ {
			d, out, err := e.Invoke(ctx, names[0], ev)
			if err != nil {
				return err
			}
			var res struct {
				ConnectMs float64 `json:"connectMs"`
				Local     string  `json:"local"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				return fmt.Errorf("tcpconnect answered %q: %w", out, err)
			}
			connect.Samples = append(connect.Samples, res.ConnectMs)
			inv.Samples = append(inv.Samples, msOf(d))
			if i == 0 {
				r.Notes = append(r.Notes, "function's local address: "+res.Local)
			}
		}
		return ctx.Err()
	},
	Plot: plotBoxes,
}

var memoryScenario = Scenario{
	Name: "memory", Title: "Memory per idle environment",
	About: "N environments are made idle (one first invoke each of N functions sharing one package). Per environment: the drop of the host's MemAvailable minus the functions' own private memory (RssAnon+RssShmem of the processes in the sandbox cgroups), after a GC of the in-process server: what the platform costs per environment (namespace, veth, cgroups, mounts, Runtime API, scheduler state). The functions' own memory and the server's RSS growth are reported separately. Needs the in-process server (host memory and cgroups).",
	Quick: 60 * time.Second,
	Run: func(ctx context.Context, e *Env, r *Result) error {
		if e.Server == nil {
			r.Skipped = "needs the in-process server (it reads the host's memory and the sandbox cgroups)"
			return nil
		}
		n := pick(e, 10, 100)
		names, err := e.CreateFunctions(ctx, "mem", FnHello, n)
		defer cleanupFunctions(e, names)
		if err != nil {
			return err
		}
		// Let earlier scenarios' environments go.
		for i := 0; i < 100 && e.Server.Scheduler().Stats().Environments > 0 && ctx.Err() == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		base, err := memSnapshot(ctx, e)
		if err != nil {
			return err
		}
		r.Checkpoints = true
		envs, sys, fnMem, srv := r.series("environments", "count", 0), r.series("host memory used (delta)", "MB", 0), r.series("functions' private memory", "MB", 0), r.series("server RSS (delta)", "MB", 0)
		kern := r.series("kernel memory (delta)", "MB", 0)
		step := max(1, n/5)
		p := &progress{e: e, what: "idle environments", total: n}
		for i, fn := range names {
			if _, _, err := e.Invoke(ctx, fn, helloEvent); err != nil {
				return err
			}
			p.step(i + 1)
			if (i+1)%step != 0 && i+1 != n {
				continue
			}
			time.Sleep(200 * time.Millisecond)
			m, err := memSnapshot(ctx, e)
			if err != nil {
				return err
			}
			envs.Samples = append(envs.Samples, float64(i+1))
			sys.Samples = append(sys.Samples, round2(float64(base.availKB-m.availKB)/1024))
			fnMem.Samples = append(fnMem.Samples, round2(float64(m.fnKB)/1024))
			srv.Samples = append(srv.Samples, round2((m.rss-base.rss)/(1<<20)))
			kern.Samples = append(kern.Samples, round2(float64(m.kernelKB-base.kernelKB)/1024))
		}
		last := len(envs.Samples) - 1
		if last < 0 {
			return errors.New("no environment was measured")
		}
		k := envs.Samples[last]
		r.value("platform memory per idle environment", round2((sys.Samples[last]-fnMem.Samples[last])/k), "MB")
		r.value("function's private memory per environment", round2(fnMem.Samples[last]/k), "MB")
		r.value("server RSS per idle environment", round2(srv.Samples[last]/k), "MB")
		r.value("kernel memory per idle environment (slab, page tables, stacks, shmem)", round2(kern.Samples[last]/k), "MB")
		r.Notes = append(r.Notes, "MemAvailable is host-wide: it also moves with unrelated activity on the machine (page cache, other processes), so small N is noisy; the kernel-memory line (unreclaimable slab + page tables + kernel stacks + shmem) is the steadier view of the same cost")
		return nil
	},
	Plot: plotMemory,
}

type memSnap struct {
	availKB, fnKB, kernelKB int64
	rss                     float64
}

func memSnapshot(ctx context.Context, e *Env) (memSnap, error) {
	rss, err := e.ServerRSS(ctx) // after a GC of the in-process server
	if err != nil {
		return memSnap{}, err
	}
	// The median of three readings of the host's counters.
	var avail, kernel []float64
	for i := 0; i < 3; i++ {
		mi, err := meminfo()
		if err != nil {
			return memSnap{}, err
		}
		avail = append(avail, float64(mi["MemAvailable"]))
		kernel = append(kernel, float64(mi["SUnreclaim"]+mi["PageTables"]+mi["KernelStack"]+mi["Shmem"]))
		time.Sleep(50 * time.Millisecond)
	}
	fn, _ := sandboxPrivateKB(e.Prefix)
	return memSnap{availKB: int64(Quantile(avail, .5)), kernelKB: int64(Quantile(kernel, .5)), fnKB: fn, rss: rss}, nil
}

var sharingScenario = Scenario{
	Name: "sharing", Title: "Server memory with many functions",
	About: "Functions are created (all with the same package, stored once by its SHA-256) and the server's resident memory (process_resident_memory_bytes on /metrics, after a GC when in-process) is sampled as their number grows; none is invoked. In-process the RSS includes the bench's own client, which stays small.",
	Quick: 60 * time.Second,
	Full:  30 * time.Minute,
	Run: func(ctx context.Context, e *Env, r *Result) error {
		n := pick(e, 100, 1000)
		step := pick(e, 25, 100)
		r.Checkpoints = true
		counts, rss := r.series("functions", "count", 0), r.series("server RSS", "MB", 0)
		var all []string
		defer func() { cleanupFunctions(e, all) }()
		take := func(k int) error {
			v, err := e.ServerRSS(ctx)
			if err != nil {
				return err
			}
			counts.Samples = append(counts.Samples, float64(k))
			rss.Samples = append(rss.Samples, round2(v/(1<<20)))
			return nil
		}
		if err := take(0); err != nil {
			return err
		}
		p := &progress{e: e, what: "functions created", total: n}
		for done := 0; done < n; {
			k := min(step, n-done)
			names := make([]string, k)
			for i := range names {
				names[i] = e.Name("share", done+i)
			}
			all = append(all, names...)
			if err := parallel(ctx, k, 8, func(ctx context.Context, i int) error { return e.create(ctx, names[i], FnHello) }); err != nil {
				return err
			}
			done += k
			p.step(done)
			if err := take(done); err != nil {
				return err
			}
		}
		last := len(rss.Samples) - 1
		r.value(fmt.Sprintf("server RSS with %d functions", int(counts.Samples[last])), rss.Samples[last], "MB")
		// The least-squares slope over every step: two single readings of a
		// garbage-collected heap are too noisy to difference.
		r.value("server RSS per 1,000 functions", round2(slope(counts.Samples, rss.Samples)*1000), "MB")
		if du, err := dirSizeMB(e); err == nil {
			r.value("data directory on disk (store + extracted code)", du, "MB")
		}
		return nil
	},
	Plot: plotSharing,
}

// dirSizeMB is the size of the in-process server's data directory.
func dirSizeMB(e *Env) (float64, error) {
	if e.Server == nil {
		return 0, errors.New("remote")
	}
	var total int64
	err := walkSize(e.Server.Cfg.DataDir, &total)
	return round2(float64(total) / (1 << 20)), err
}

func walkSize(dir string, total *int64) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range ents {
		p := dir + "/" + de.Name()
		if de.IsDir() {
			_ = walkSize(p, total)
			continue
		}
		if de.Type().IsRegular() {
			if fi, err := de.Info(); err == nil {
				*total += fi.Size()
			}
		}
	}
	return nil
}

// waitPools waits (at most 30 s in all, 8 s in a quick run; 3 s for the
// quiet part of a quick run) until the in-process server's pools are full and the machine is
// quiet (under 10% busy over 200 ms):
// refills run at low priority and lag behind the function creation that
// precedes a burst, and a refill or teardown still running would compete
// with the burst for the CPU.
func waitPools(ctx context.Context, e *Env) {
	full := func() bool {
		n, size := e.Server.Router().Pooled()
		m, msize := e.Server.Sandbox().Pooled()
		return n >= size && m >= msize
	}
	// A quick run (CI, where other packages' tests refill pools of their
	// own) waits at most 8 s: it asserts no timing, and the wait counts
	// against the scenario's time limit.
	deadline := time.Now().Add(30 * time.Second)
	if e.Quick {
		deadline = time.Now().Add(8 * time.Second)
	}
	for !full() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	// The previous level's environments are torn down asynchronously (the
	// kernel frees network namespaces in a work queue): wait until the
	// machine is quiet too, so each level measures only its own work. A
	// quick run (CI, where other test packages keep the machine busy)
	// gives that at most 3 s.
	busy := 1.0
	quiet := deadline
	if e.Quick {
		quiet = time.Now().Add(3 * time.Second)
	}
	for time.Now().Before(quiet) && ctx.Err() == nil {
		c0, t0 := machineCPU(), time.Now()
		time.Sleep(200 * time.Millisecond)
		busy = (machineCPU() - c0) / float64(time.Since(t0).Milliseconds()) / float64(runtime.NumCPU())
		if busy < 0.1 {
			break
		}
	}
	n, size := e.Server.Router().Pooled()
	m, msize := e.Server.Sandbox().Pooled()
	e.Log.Info("bench: pools full, machine quiet", "namespaces", fmt.Sprintf("%d/%d", n, size), "inits", fmt.Sprintf("%d/%d", m, msize), "machine_busy", fmt.Sprintf("%.0f%%", busy*100))
}

// machineCPU returns the CPU time (ms) every core spent outside idle and
// iowait since boot, from the first line of /proc/stat; 0 if unreadable.
func machineCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for _, i := range []int{1, 2, 3, 6, 7} {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return 0
		}
		busy += v
	}
	return busy * 1000 / float64(clockTicks)
}

// clockTicks is USER_HZ, the unit of /proc/stat (100 on Linux).
const clockTicks = 100

// slope is the least-squares slope of ys over xs (0 with fewer than two
// distinct xs).
func slope(xs, ys []float64) float64 {
	n := float64(min(len(xs), len(ys)))
	var sx, sy, sxx, sxy float64
	for i := 0; i < int(n); i++ {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if n < 2 || d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// coldStartsOf returns the in-process scheduler's recorded cold starts of
// the bench account's functions named in names, and for each the index of
// its function in names.
func coldStartsOf(e *Env, names []string) ([]invoke.ColdStart, []int) {
	want := map[string]int{}
	for i, n := range names {
		want[n] = i
	}
	var css []invoke.ColdStart
	var idx []int
	for _, cs := range e.Server.Scheduler().ColdStarts() {
		if i, ok := want[cs.Function]; ok && cs.AccountID == e.Server.Account.ID {
			css, idx = append(css, cs), append(idx, i)
		}
	}
	return css, idx
}

// burstPhases reports where a burst level's cold starts spent their time:
// the mean of each phase (sandbox_* ones included) the scheduler recorded.
func burstPhases(e *Env, r *Result, l int, names []string) {
	sum := map[string]float64{}
	var order []string
	css, _ := coldStartsOf(e, names)
	n := len(css)
	for _, cs := range css {
		for _, p := range cs.Phases {
			if _, seen := sum[p.Name]; !seen {
				order = append(order, p.Name)
			}
			sum[p.Name] += msOf(p.D)
		}
	}
	if n == 0 {
		return
	}
	var parts []string
	for _, ph := range order {
		parts = append(parts, fmt.Sprintf("%s %.1f", ph, sum[ph]/float64(n)))
	}
	e.Log.Info("bench: burst phases (mean ms)", "simultaneous", l, "phases", strings.Join(parts, ", "))
	r.Notes = append(r.Notes, fmt.Sprintf("%d simultaneous, mean ms per cold start in each phase: %s", l, strings.Join(parts, ", ")))
}
