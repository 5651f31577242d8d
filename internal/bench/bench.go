package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/lambdaplane/lambdaplane/internal/client"
	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/server"
	dto "github.com/prometheus/client_model/go"
)

// Options configure a bench run.
type Options struct {
	Quick     bool     // the CI suite: small counts, < 2 minutes
	OutDir    string   // RESULTS.md, results.json and the plots (default ./bench-results)
	Scenarios []string // run only these (default: all)

	// Remote target: when Client.EndpointURL is set the bench runs against
	// that server (credentials resolved like every client command) instead
	// of starting its own.
	Client client.Options
	// EgressAddr is a TCP address the remote server's functions can reach
	// (the egress scenario); in-process the bench makes its own.
	EgressAddr string
	// MetricsURL is the remote server's Prometheus /metrics (default: port
	// 9109 of the endpoint's host, serve's --metrics-listen default).
	MetricsURL string

	// Pools of the in-process server: ready network namespaces and started
	// init processes (serve's --pool-size and --init-pool-size). The
	// default, DefaultPool, covers the largest burst, as an operator
	// expecting bursts would configure it.
	PoolSize, InitPoolSize int

	InitPath   string // lambdaplane-init (default: next to the executable, else built from the module)
	ModuleRoot string // lambdaplane source tree (default: the one containing the working directory)
	Logger     *slog.Logger
	Timeout    time.Duration // whole run (default 110s quick, 2h full)
}

// DefaultPool is the in-process server's pool sizes in a bench run: enough
// for the 100-simultaneous burst to start from ready namespaces and inits.
const DefaultPool = 128

// Report is everything a run produced (results.json).
type Report struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Quick    bool      `json:"quick"`
	Target   string    `json:"target"` // "in-process" or the endpoint
	// Pools of the in-process server (namespaces, init processes).
	PoolSize     int       `json:"pool_size,omitempty"`
	InitPoolSize int       `json:"init_pool_size,omitempty"`
	Commit       string    `json:"commit"`
	Machine      Machine   `json:"machine"`
	Results      []*Result `json:"scenarios"`
}

// Result is one scenario's outcome.
type Result struct {
	Name    string    `json:"name"`
	Title   string    `json:"title"`
	Pending string    `json:"pending,omitempty"` // not measurable yet, and why
	Skipped string    `json:"skipped,omitempty"` // not measurable on this target, and why
	Error   string    `json:"error,omitempty"`
	Seconds float64   `json:"seconds"`
	Series  []*Series `json:"series,omitempty"`
	Values  []Value   `json:"values,omitempty"`
	Notes   []string  `json:"notes,omitempty"`
	Plots   []string  `json:"plots,omitempty"` // SVG files in OutDir
	// Checkpoints: the series are parallel columns sampled as something
	// grows (the first is the x), not distributions.
	Checkpoints bool `json:"checkpoints,omitempty"`
}

// Series is one set of samples (every sample is kept).
type Series struct {
	Name    string    `json:"name"`
	Unit    string    `json:"unit"`
	X       float64   `json:"x,omitempty"` // the swept parameter (concurrency, count), when there is one
	Samples []float64 `json:"samples"`
	Errors  int       `json:"errors,omitempty"`
}

// Value is one derived figure.
type Value struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

func (r *Result) series(name, unit string, x float64) *Series {
	s := &Series{Name: name, Unit: unit, X: x, Samples: []float64{}}
	r.Series = append(r.Series, s)
	return s
}

func (r *Result) value(name string, v float64, unit string) {
	r.Values = append(r.Values, Value{Name: name, Value: v, Unit: unit})
}

// Env is what a scenario works with.
type Env struct {
	Lambda  *lambda.Client
	Quick   bool
	Log     *slog.Logger
	Server  *server.Server // nil when the target is remote
	Prefix  string         // kernel prefix of the in-process server
	Egress  string         // TCP address functions can reach, "" if none
	Zips    map[string][]byte
	OutDir  string
	scrape  func(ctx context.Context) (map[string]*dto.MetricFamily, error)
	iam     *iam.Client
	role    string
	runID   string
	mu      sync.Mutex
	created map[string]bool

	// VPC scenarios (in-process only).
	ec2     *ec2.Client
	vpcRole string // an execution role with the VPC permissions
	net     *vpcNet
	// spawn starts another in-process server (e.g. in per-env-eni mode),
	// once per key; it is closed, and checked for leaks, with the bench's.
	spawn   func(ctx context.Context, key string, mut func(*server.Config)) (*Env, error)
	spawned map[string]*Env
}

// Name returns a function name unique to this run.
func (e *Env) Name(scenario string, i int) string {
	return fmt.Sprintf("lpb-%s-%s-%04d", e.runID, scenario, i)
}

// CreateFunctions creates n functions running fn (8 at a time) and returns
// their names. Every function created is deleted when the run ends.
func (e *Env) CreateFunctions(ctx context.Context, scenario, fn string, n int) ([]string, error) {
	names := make([]string, n)
	for i := range names {
		names[i] = e.Name(scenario, i)
	}
	err := parallel(ctx, n, 8, func(ctx context.Context, i int) error {
		return e.create(ctx, names[i], fn)
	})
	return names, err
}

func (e *Env) create(ctx context.Context, name, fn string) error {
	return e.createIn(ctx, name, fn, nil)
}

// createIn creates a function, in a VPC when vc is set (with the role that
// has the VPC permissions).
func (e *Env) createIn(ctx context.Context, name, fn string, vc *types.VpcConfig) error {
	zip, ok := e.Zips[fn]
	if !ok {
		return fmt.Errorf("unknown test function %q", fn)
	}
	e.mu.Lock()
	e.created[name] = true
	e.mu.Unlock()
	role := e.role
	if vc != nil {
		role = e.vpcRole
	}
	_, err := e.Lambda.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Runtime: types.RuntimeProvidedal2023, Handler: aws.String("bootstrap"),
		Role: aws.String(role), Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(30), MemorySize: aws.Int32(128),
		VpcConfig: vc,
	})
	if err != nil {
		return fmt.Errorf("create function %s: %w", name, err)
	}
	return nil
}

// DeleteFunctions deletes functions (tearing down their environments).
func (e *Env) DeleteFunctions(ctx context.Context, names []string) error {
	return parallel(ctx, len(names), 8, func(ctx context.Context, i int) error {
		_, err := e.Lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(names[i])})
		var nf *types.ResourceNotFoundException
		if err != nil && !errors.As(err, &nf) {
			return fmt.Errorf("delete function %s: %w", names[i], err)
		}
		e.mu.Lock()
		delete(e.created, names[i])
		e.mu.Unlock()
		return nil
	})
}

// Invoke invokes name synchronously and returns the client-side latency.
// A function error is an error.
func (e *Env) Invoke(ctx context.Context, name string, payload []byte) (time.Duration, []byte, error) {
	t := time.Now()
	out, err := e.Lambda.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Payload: payload})
	d := time.Since(t)
	if err != nil {
		return d, nil, fmt.Errorf("invoke %s: %w", name, err)
	}
	if out.FunctionError != nil {
		return d, out.Payload, fmt.Errorf("invoke %s: function error %s: %s", name, *out.FunctionError, out.Payload)
	}
	return d, out.Payload, nil
}

// Scrape reads the server's /metrics.
func (e *Env) Scrape(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	return e.scrape(ctx)
}

// ServerRSS is the server's resident memory in bytes from /metrics, after
// a GC when the server runs in-process.
func (e *Env) ServerRSS(ctx context.Context) (float64, error) {
	if e.Server != nil {
		debug.FreeOSMemory()
	}
	mf, err := e.Scrape(ctx)
	if err != nil {
		return 0, err
	}
	f := mf["process_resident_memory_bytes"]
	if f == nil || len(f.Metric) == 0 {
		return 0, errors.New("server does not report process_resident_memory_bytes")
	}
	return f.Metric[0].GetGauge().GetValue(), nil
}

// parallel runs f(0..n-1) with at most width at once; it stops starting new
// work at the first error or when ctx ends.
func parallel(ctx context.Context, n, width int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, width)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(ctx, i); err != nil {
				cancel(err)
			}
		}(i)
	}
	wg.Wait()
	return context.Cause(ctx)
}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// Run runs the suite and writes its report to o.OutDir.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	log := o.Logger
	if o.OutDir == "" {
		o.OutDir = "bench-results"
	}
	if o.PoolSize == 0 {
		o.PoolSize = DefaultPool
	}
	if o.InitPoolSize == 0 {
		o.InitPoolSize = DefaultPool
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Hour
		if o.Quick {
			o.Timeout = 110 * time.Second
		}
	}
	scenarios, err := selectScenarios(o.Scenarios)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	if o.ModuleRoot == "" {
		wd, _ := os.Getwd()
		o.ModuleRoot = ModuleRoot(wd)
	}
	work, err := os.MkdirTemp("", "lpbench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	rep = &Report{Started: time.Now().UTC(), Quick: o.Quick, Commit: gitCommit(o.ModuleRoot), Machine: machineInfo()}
	e := &Env{Quick: o.Quick, Log: log, OutDir: o.OutDir, runID: randHex(4), created: map[string]bool{}}

	log.Info("bench: building test functions", "module", o.ModuleRoot)
	if e.Zips, err = buildFunctions(ctx, o.ModuleRoot, work); err != nil {
		return nil, err
	}

	var cleanups []func() error
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			if cerr := cleanups[i](); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
	}()
	if o.Client.EndpointURL != "" {
		c, err := client.Resolve(ctx, o.Client)
		if err != nil {
			return nil, err
		}
		rep.Target = c.Endpoint
		e.Lambda = lambda.NewFromConfig(c.Config)
		e.iam = iam.NewFromConfig(c.Config)
		e.role = "arn:aws:iam::000000000000:role/" + benchRole
		e.Egress = o.EgressAddr
		mu := o.MetricsURL
		if mu == "" {
			if mu, err = defaultMetricsURL(c.Endpoint); err != nil {
				return nil, err
			}
		}
		e.scrape = httpScraper(mu)
	} else {
		rep.Target = "in-process"
		rep.PoolSize, rep.InitPoolSize = o.PoolSize, o.InitPoolSize
		stop, err := startLocal(ctx, &o, e, work)
		cleanups = append(cleanups, stop)
		if err != nil {
			return nil, err
		}
	}
	arn, createdRole, err := ensureRole(ctx, e.iam, e.role)
	if err != nil {
		return nil, err
	}
	e.role = arn
	if createdRole {
		cleanups = append(cleanups, func() error {
			dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer dcancel()
			_, err := e.iam.DeleteRole(dctx, &iam.DeleteRoleInput{RoleName: aws.String(benchRole)})
			return err
		})
	}
	cleanups = append(cleanups, func() error {
		e.mu.Lock()
		left := make([]string, 0, len(e.created))
		for n := range e.created {
			left = append(left, n)
		}
		e.mu.Unlock()
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer dcancel()
		var err error
		if len(left) > 0 {
			sort.Strings(left)
			log.Info("bench: deleting the functions it created", "count", len(left))
			err = e.DeleteFunctions(dctx, left)
		}
		return errors.Join(err, e.deleteNetwork(dctx))
	})

	for i, sc := range scenarios {
		r := &Result{Name: sc.Name, Title: sc.Title}
		rep.Results = append(rep.Results, r)
		if sc.Pending != "" {
			r.Pending = sc.Pending
			continue
		}
		if ctx.Err() != nil {
			r.Error = "not run: the run's time limit was reached"
			continue
		}
		log.Info(fmt.Sprintf("bench: [%d/%d] %s", i+1, len(scenarios), sc.Title))
		sctx, scancel := context.WithTimeout(ctx, sc.limit(o.Quick))
		t := time.Now()
		if err := sc.Run(sctx, e, r); err != nil {
			r.Error = err.Error()
			log.Warn("bench: scenario failed", "scenario", sc.Name, "err", err)
		}
		scancel()
		r.Seconds = time.Since(t).Seconds()
		if plots, err := plotResult(o.OutDir, sc, r); err != nil {
			log.Warn("bench: plot failed", "scenario", sc.Name, "err", err)
		} else {
			r.Plots = plots
		}
		log.Info("bench: done", "scenario", sc.Name, "took", time.Since(t).Round(time.Millisecond), "summary", oneLine(r))
	}
	rep.Finished = time.Now().UTC()
	if err := writeReport(o.OutDir, rep); err != nil {
		return rep, err
	}
	log.Info("bench: results written", "dir", o.OutDir)
	return rep, nil
}

// startLocal starts a server in a scratch data directory with its uplink in
// a namespace of the bench's own that stands in for the internet (it owns
// 203.0.113.1 and answers TCP on port 80). The returned stop closes the
// server, removes the namespace and checks that nothing prefixed is left.
func startLocal(ctx context.Context, o *Options, e *Env, work string) (func() error, error) {
	if os.Geteuid() != 0 {
		return func() error { return nil }, errors.New("an in-process server needs root (network namespaces, cgroups): run as root, or pass --endpoint-url to measure a running server")
	}
	var stops []func() error
	stop := func() error {
		var errs []error
		for i := len(stops) - 1; i >= 0; i-- {
			errs = append(errs, stops[i]())
		}
		return errors.Join(errs...)
	}
	initPath := o.InitPath
	if initPath == "" {
		if exe, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(exe), "lambdaplane-init"); fileExists(p) {
				initPath = p
			}
		}
	}
	if initPath == "" {
		if o.ModuleRoot == "" {
			return stop, errors.New("lambdaplane-init not found next to the executable: pass --init-path or run from the repository")
		}
		initPath = filepath.Join(work, "bin", "lambdaplane-init")
		if err := goBuild(ctx, o.ModuleRoot, "-trimpath", "-ldflags=-s", "-o", initPath, "./cmd/lambdaplane-init"); err != nil {
			return stop, err
		}
	}
	inet, closeInet, err := makeInternet()
	if err != nil {
		return stop, err
	}
	stops = append(stops, closeInet)
	e.Egress = internetTCP
	launch := func(ctx context.Context, ne *Env, uplink int, mut func(*server.Config)) error {
		ne.Prefix = "b" + randHex(4)
		cfg := server.Config{
			Listen: "127.0.0.1:0", DataDir: filepath.Join(work, "data-"+ne.Prefix), Prefix: ne.Prefix, PoolSize: o.PoolSize, InitPoolSize: o.InitPoolSize,
			UplinkNetns: inet, UplinkNet: netip.PrefixFrom(netip.AddrFrom4([4]byte{169, 254, 199, byte(4 * uplink)}), 30), InitPath: initPath, AutoServiceCIDR: true,
			IdleTimeout: 30 * time.Minute, AccountLimit: 1000, MetricsListen: "127.0.0.1:0",
		}
		if mut != nil {
			mut(&cfg)
		}
		srvLog := quietServer(e.Log.With("component", "server", "prefix", ne.Prefix))
		srv, err := server.Start(ctx, cfg, srvLog)
		if err != nil {
			return fmt.Errorf("start server: %w", err)
		}
		stops = append(stops, func() error {
			err := srv.Close()
			nss, links, lerr := netdev.ListPrefixed(ne.Prefix)
			if lerr != nil {
				return errors.Join(err, lerr)
			}
			if len(nss) > 0 || len(links) > 0 {
				err = errors.Join(err, fmt.Errorf("server left kernel objects behind: namespaces %v, links %v", nss, links))
			}
			return err
		})
		ne.bind(srv)
		return nil
	}
	if err := launch(ctx, e, 0, nil); err != nil {
		return stop, err
	}
	e.spawned = map[string]*Env{}
	e.spawn = func(ctx context.Context, key string, mut func(*server.Config)) (*Env, error) {
		if ne := e.spawned[key]; ne != nil {
			return ne, nil
		}
		if len(e.spawned) >= 60 {
			return nil, errors.New("too many servers")
		}
		ne := &Env{Quick: e.Quick, Log: e.Log, Egress: e.Egress, Zips: e.Zips, OutDir: e.OutDir, runID: e.runID, created: map[string]bool{}}
		if err := launch(ctx, ne, len(e.spawned)+1, mut); err != nil {
			return nil, err
		}
		e.spawned[key] = ne
		// Runs before this server's Close (stops run in reverse).
		stops = append(stops, func() error { return ne.teardown() })
		e.Log.Info("bench: started another server", "key", key, "prefix", ne.Prefix)
		return ne, nil
	}
	return stop, nil
}

// bind points e's clients at an in-process server.
func (e *Env) bind(srv *server.Server) {
	e.Server = srv
	e.role = "arn:aws:iam::" + srv.Account.ID + ":role/lambdaplane-bench"
	creds := credentials.NewStaticCredentialsProvider(srv.Account.Keys[0].ID, srv.Account.Keys[0].Secret, "")
	e.Lambda = lambda.New(lambda.Options{
		Region: srv.Cfg.Region, BaseEndpoint: aws.String(srv.Endpoint), Credentials: creds,
		HTTPClient: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}},
	})
	e.iam = iam.New(iam.Options{Region: srv.Cfg.Region, BaseEndpoint: aws.String(srv.Endpoint), Credentials: creds})
	e.ec2 = ec2.New(ec2.Options{Region: srv.Cfg.Region, BaseEndpoint: aws.String(srv.Endpoint), Credentials: creds})
	e.scrape = httpScraper(srv.MetricsEndpoint + "/metrics")
}

// teardown deletes what the bench left on a spawned server: functions,
// then its VPC.
func (e *Env) teardown() error {
	e.mu.Lock()
	left := make([]string, 0, len(e.created))
	for n := range e.created {
		left = append(left, n)
	}
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := e.DeleteFunctions(ctx, left)
	return errors.Join(err, e.deleteNetwork(ctx))
}

// slogAtLeast quiets the in-process server to warnings unless the bench's
// own logger is at debug level.
func quietServer(l *slog.Logger) *slog.Logger {
	if l.Enabled(context.Background(), slog.LevelDebug) {
		return l
	}
	return slog.New(levelFilter{l.Handler(), slog.LevelWarn})
}

type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{f.Handler.WithAttrs(a), f.min}
}
func (f levelFilter) WithGroup(n string) slog.Handler {
	return levelFilter{f.Handler.WithGroup(n), f.min}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

const (
	internetIP  = "203.0.113.1"
	internetTCP = internetIP + ":80"
)

// makeInternet creates the namespace standing in for the internet. Never a
// real outside address: 203.0.113.1 is a documentation address on its lo.
func makeInternet() (string, func() error, error) {
	name, del, err := netdev.NewScratchNetns("lpbinet", netip.MustParseAddr(internetIP))
	if err != nil {
		return "", nil, err
	}
	path := "/run/netns/" + name
	ln, err := netdev.ListenIn(path, "tcp", internetTCP)
	if err != nil {
		_ = del()
		return "", nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				_, _ = fmt.Fprintf(c, "internet sees %s\n", c.RemoteAddr())
			}(c)
		}
	}()
	return path, func() error { ln.Close(); return del() }, nil
}

// defaultMetricsURL is the /metrics of a server at endpoint that listens
// for metrics where serve does by default: port 9109 of the same host.
func defaultMetricsURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	_, port, _ := net.SplitHostPort(server.DefaultMetricsListen)
	return "http://" + net.JoinHostPort(u.Hostname(), port) + "/metrics", nil
}

func httpScraper(url string) func(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	return func(ctx context.Context) (map[string]*dto.MetricFamily, error) {
		return ScrapeMetrics(ctx, url)
	}
}

// ScrapeMetrics fetches and parses a Prometheus text endpoint.
func ScrapeMetrics(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return parseMetrics(resp.Body)
}
