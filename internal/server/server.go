package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/api"
	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/backup"
	"github.com/lambdaplane/lambdaplane/internal/codeurl"
	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/datapath"
	"github.com/lambdaplane/lambdaplane/internal/ec2api"
	"github.com/lambdaplane/lambdaplane/internal/hyperplane"
	"github.com/lambdaplane/lambdaplane/internal/iam"
	"github.com/lambdaplane/lambdaplane/internal/iamapi"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
	"github.com/lambdaplane/lambdaplane/internal/lambdaapi"
	"github.com/lambdaplane/lambdaplane/internal/logs"
	"github.com/lambdaplane/lambdaplane/internal/logsapi"
	"github.com/lambdaplane/lambdaplane/internal/netdev"
	"github.com/lambdaplane/lambdaplane/internal/placement"
	"github.com/lambdaplane/lambdaplane/internal/provision"
	"github.com/lambdaplane/lambdaplane/internal/runtimes"
	"github.com/lambdaplane/lambdaplane/internal/sandbox"
	"github.com/lambdaplane/lambdaplane/internal/sqsapi"
	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/lambdaplane/lambdaplane/internal/sts"
	"github.com/lambdaplane/lambdaplane/internal/stsapi"
	"github.com/lambdaplane/lambdaplane/internal/vpc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is a running lambdaplane.
type Server struct {
	Cfg      Config
	Endpoint string // http://host:port
	Account  *auth.Account
	// MetricsEndpoint is the Prometheus listener, http://host:port (scrape
	// MetricsEndpoint + "/metrics"); "" when Cfg.MetricsListen is off.
	MetricsEndpoint string
	// URLEndpoint is the function URL listener, http://host:port; "" when
	// Cfg.URLListen is off.
	URLEndpoint string

	log        *slog.Logger
	st         *store.Store
	accounts   *auth.Accounts
	router     *netdev.Router
	datapath   *datapath.Reconciler
	hyperplane *hyperplane.Manager
	failover   func() // stops Hyperplane failover (clustered)
	roles      *iam.Roles
	sts        *sts.Service
	fnAPI      *http.Server // the API inside the service network (endpoint.go)
	provision  *provision.Keeper
	sandbox    *sandbox.Manager
	ctl        *control.Service
	sched      *invoke.Scheduler
	triggers   *triggers // queues, event source mappings, destinations (queues.go)
	logs       *logs.Store
	logsAPI    *logsapi.Service // CloudWatch Logs
	front      *api.Server
	http       *http.Server
	ln         net.Listener
	metrics    *http.Server
	fnURLs     *urlListener // function URLs (urls.go)
	closeMu    sync.Once
	closeErr   error
	host       *hostClaim    // the host-wide claim of Cfg.Prefix and Cfg.ServiceCIDR
	cluster    *clusterParts // nil on a single host (cluster.go)
	disk       *diskGuard    // restarts the store's JetStream after a full disk
}

// Start builds every part, reconciles the kernel with the stored state and
// starts serving. On error everything already built is torn down.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (_ *Server, err error) {
	if err := cfg.Defaults(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{Cfg: cfg, log: log}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// Claim the prefix and the service CIDR host-wide before anything
	// touches the kernel: another server's objects must never look like
	// leftovers of this one.
	hostUplink := ""
	if cfg.UplinkNetns == "" {
		hostUplink = cfg.UplinkNet.String()
	}
	if cfg.Clustered {
		// A member's service CIDR is its leased slice of the cluster's,
		// so the store comes first (it touches no kernel object).
		if err := s.openClusterStore(ctx, &cfg); err != nil {
			return nil, err
		}
		s.Cfg.ServiceCIDR = cfg.ServiceCIDR
	}
	hostNetns, _ := os.Readlink("/proc/thread-self/ns/net")
	if s.host, err = claimHost(LockDir, Holder{
		PID: os.Getpid(), Prefix: cfg.Prefix, DataDir: cfg.DataDir, Listen: cfg.Listen, ServiceCIDR: cfg.ServiceCIDR.String(),
		HostUplink: hostUplink, HostNetns: hostNetns,
	}, cfg.AutoServiceCIDR); err != nil {
		return nil, err
	}
	cfg.ServiceCIDR, s.Cfg.ServiceCIDR = s.host.serviceCIDR, s.host.serviceCIDR
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", cfg.DataDir, err)
	}
	reg := prometheus.NewRegistry()
	repairs := newRepairCounter()
	reg.MustRegister(repairs)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	step := func(msg string) func() {
		t := time.Now()
		log.Info(msg + "...")
		return func() { log.Info(msg+" done", "took", time.Since(t).Round(time.Millisecond)) }
	}

	done := step("opening store")
	if s.st == nil {
		so := storeOptions(cfg)
		so.Logger = log
		if s.st, err = store.Open(ctx, so); err != nil {
			return nil, err
		}
	}
	done()
	if s.accounts, err = auth.NewAccounts(ctx, s.st); err != nil {
		return nil, err
	}
	acct, created, err := ensureFirst(ctx, s.accounts, cfg.Clustered)
	if err != nil {
		return nil, err
	}
	s.Account = acct
	if cfg.Clustered {
		if err := s.joinCluster(ctx, cfg); err != nil {
			return nil, err
		}
	}
	credPath := filepath.Join(cfg.DataDir, "credentials")
	if _, statErr := os.Stat(credPath); created || statErr != nil {
		if err := auth.WriteCredentialsFile(credPath, acct, "lambdaplane", cfg.Region); err != nil {
			return nil, err
		}
		if err := auth.WriteConfigFile(filepath.Join(cfg.DataDir, "config"), "lambdaplane", cfg.Region); err != nil {
			return nil, err
		}
	}

	done = step("reconciling network (service router, namespace pool)")
	if s.router, err = netdev.NewRouter(netdev.Config{
		Prefix: cfg.Prefix, ServiceCIDR: cfg.ServiceCIDR, UplinkNetns: cfg.UplinkNetns, UplinkNet: cfg.UplinkNet,
		EgressAllow: cfg.EgressAllow, PoolSize: cfg.PoolSize, RefillDelay: cfg.RefillDelay, Logger: log,
		OnRepair: func(kind netdev.RepairKind, _ string) { repairs.WithLabelValues(string(kind)).Inc() },
	}); err != nil {
		return nil, err
	}
	if err := s.router.Setup(ctx); err != nil {
		return nil, fmt.Errorf("set up the service network: %w", err)
	}
	done()
	if s.sandbox, err = sandbox.NewManager(sandbox.Config{
		Prefix: cfg.Prefix, InitPath: cfg.InitPath, RootDir: filepath.Join(cfg.DataDir, "run"),
		UID: cfg.SandboxUID, GID: cfg.SandboxUID, HostIDBase: cfg.SandboxUIDBase, PoolSize: cfg.InitPoolSize, RefillDelay: cfg.RefillDelay, Logger: log,
	}); err != nil {
		return nil, err
	}
	if err := s.sandbox.Cleanup(); err != nil {
		log.Warn("removing leftover cgroups", "err", err)
	}

	rt := runtimes.Default()
	if cfg.RuntimesFile != "" {
		if err := rt.LoadFile(cfg.RuntimesFile); err != nil {
			return nil, err
		}
	}
	runtimeDir := filepath.Join(cfg.DataDir, "runtime")
	if err := rt.WriteRuntimeDir(runtimeDir); err != nil {
		return nil, err
	}
	logStore, err := logs.NewStore(ctx, s.st.JetStream(), logs.Options{Quota: cfg.LogQuota, FlushDelay: cfg.LogFlushDelay})
	if err != nil {
		return nil, err
	}
	s.logs = logStore

	model, err := vpc.Open(ctx, s.st, log)
	if err != nil {
		return nil, err
	}
	done = step("reconciling VPC datapath (routers, interfaces, security groups)")
	var vpcHosts datapath.Hosts // nil on a single host
	hpHost, hpLeader := "", func() bool { return true }
	if s.cluster != nil {
		vc := vpcCluster{s.cluster.members}
		vpcHosts, hpHost, hpLeader = vc, cfg.HostID, vc.IsLeader
		model.SetHome(cfg.HostID)
	}
	if s.datapath, err = datapath.New(datapath.Config{Model: model, Router: s.router, Logger: log, RepairInterval: cfg.RepairInterval, Hosts: vpcHosts}); err != nil {
		return nil, err
	}
	if err := s.datapath.Start(ctx); err != nil {
		return nil, err
	}
	done()
	done = step("restoring Hyperplane ENIs")
	if s.hyperplane, err = hyperplane.New(ctx, hyperplane.Config{
		Model: model, Datapath: s.datapath, Router: s.router, Store: s.st, Logger: log,
		Mode: cfg.VpcMode, MaxConnsPerENI: cfg.ENIMaxConns, ENIsPerVPC: cfg.ENIsPerVPC,
		ENIsPerAccount: cfg.ENIsPerAccount, CreateRate: cfg.ENICreateRate,
		HostID: hpHost, IsLeader: hpLeader,
	}); err != nil {
		return nil, err
	}
	if s.cluster != nil {
		s.failover = s.hyperplane.FollowCluster(vpcCluster{s.cluster.members}, 0)
	}
	done()
	// Metrics registration point for VPC state (ENIs, addresses per subnet):
	// register the datapath's collector on reg here.
	reg.MustRegister(newVPCCollector(s.accounts, model, s.hyperplane))
	roles, err := iam.NewRoles(ctx, s.st)
	if err != nil {
		return nil, err
	}
	s.roles = roles
	users, err := iam.NewUsers(ctx, s.st)
	if err != nil {
		return nil, err
	}
	stsSvc, err := sts.Open(ctx, s.st, roles, users)
	if err != nil {
		return nil, err
	}
	s.sts = stsSvc
	authz := userAuthorizer{users: users, sessions: stsSvc}

	var sched *invoke.Scheduler
	var schedMu sync.RWMutex
	creds := newRoleCredentials(stsSvc)
	var primeOn atomic.Bool // records replayed at start are not primed
	if s.ctl, err = control.New(ctx, control.Options{
		Store: s.st, DataDir: cfg.DataDir, AccountLimit: cfg.AccountLimit, Logger: log, MinFreeDisk: cfg.MinFreeDisk,
		Runtimes: func(id string) error { _, err := rt.Lookup(id); return err },
		Roles:    roles, Vpcs: vpcLookup{model}, Networks: networks{s.hyperplane},
		VpcIdleTimeout: cfg.VpcIdleTimeout, Authorize: authz.authorizeCaller,
		OnChange: func(account, name string) {
			schedMu.RLock()
			sc := sched
			schedMu.RUnlock()
			if sc != nil {
				sc.Retire(account, name)
			}
			if primeOn.Load() {
				s.primeCredentials(creds, account, name)
			}
		},
	}); err != nil {
		return nil, err
	}
	s.buildPlacement(cfg)
	if s.cluster != nil {
		s.cluster.creds = creds // standby primes them too
	}
	primeOn.Store(true)
	place, slots := s.schedPlacement()
	budgetMB, err := cfg.EnvMemoryBudget.MegaBytes()
	if err != nil {
		return nil, err
	}
	if s.triggers, err = openTriggers(ctx, s.st, cfg.Region, s.ctl, roles, log); err != nil {
		return nil, err
	}
	sc, err := invoke.New(ctx, invoke.Options{
		MemoryBudgetMB: budgetMB, WarmHeadroom: cfg.WarmHeadroom,
		Control: s.ctl, Router: s.router, Sandbox: s.sandbox, Runtimes: rt, RuntimeDir: runtimeDir,
		Logs: logStore, LogRate: cfg.LogRate, JetStream: s.st.JetStream(), Registry: reg, IdleTimeout: cfg.IdleTimeout,
		AsyncAckWait: cfg.AsyncAckWait, AsyncBackoff: cfg.AsyncBackoff, Logger: log,
		OTLPEndpoint: cfg.OTLPEndpoint, TracerProvider: cfg.TracerProvider, Networks: s.hyperplane,
		HostID: cfg.HostID, Placement: place, AccountSlots: slots, Destinations: s.triggers.dispatch,
		Credentials: creds.get, EndpointURL: s.router.APIEndpoint(),
	})
	if err != nil {
		return nil, err
	}
	schedMu.Lock()
	sched = sc
	schedMu.Unlock()
	s.sched = sc
	if s.provision, err = provision.Start(ctx, s.st, s.ctl, sc, cfg.HostID, s.isHomeFunc(), log); err != nil {
		return nil, err
	}
	if err := s.triggers.start(ctx, s.st, sc, s.ctl, cfg.HostID, log); err != nil {
		return nil, err
	}
	if s.cluster != nil {
		if err := s.serveCluster(); err != nil {
			return nil, err
		}
	}
	s.disk = newDiskGuard(cfg.DataDir, cfg.MinFreeDisk, s.st, log)
	reg.MustRegister(s.disk)
	s.disk.start(s.ctl)

	verifier := auth.NewVerifier(s.accounts, time.Now)
	verifier.SetRegion(cfg.Region)
	verifier.SetSessions(stsSvc)
	codeURLs, err := codeurl.Open(ctx, s.st, cfg.CodeURLTTL, nil)
	if err != nil {
		return nil, err
	}
	if s.logsAPI, err = logsapi.New(ctx, logsapi.Options{Store: s.st, Logs: logStore, Functions: s.ctl, Logger: log, Holder: cfg.HostID}); err != nil {
		return nil, err
	}
	if err := s.serveURLs(verifier, authz); err != nil {
		return nil, err
	}
	s.front = api.New(verifier, log, reg, s.logsAPI, clusterFront{lambdaapi.New(lambdaapi.Deps{CodeURLs: codeURLs, URLPort: s.urlPort, Control: s.ctl, Scheduler: sc, Logs: logStore, Log: log, ESM: s.triggers.esm, EventInvoke: s.triggers.configs}), s}, datapath.WrapEC2(ec2api.New(model, log), model, s.datapath), iamapi.New(roles, users, s.accounts, log), stsapi.New(stsSvc, log), sqsapi.New(s.triggers.queues, authz, log))
	s.front.SetAuthorizer(authz)
	s.front.SetReadTimeout(cfg.ReadTimeout)
	s.front.Handle("/_lambdaplane/accounts", &adminHandler{accounts: s.accounts, dataDir: cfg.DataDir})
	s.front.Handle(backup.Path, s.backupHandler())
	s.front.Handle(codeurl.Path, codeURLs.Handler(s.openCode, log))

	if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen on %s: %w (is another server running? pass --listen)", cfg.Listen, err)
	}
	s.Endpoint = "http://" + s.ln.Addr().String()
	if err := s.host.setListen(s.ln.Addr().String()); err != nil {
		log.Warn("recording the listen address in the host lock", "err", err)
	}
	s.http = &http.Server{
		Handler: s.front, ConnContext: api.ConnContext,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, ReadTimeout: cfg.ReadTimeout, IdleTimeout: cfg.IdleConnTimeout,
	}
	apiLn := api.LimitUnauthenticated(s.ln, cfg.MaxUnauthConns)
	go func() {
		if err := s.http.Serve(apiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("API server stopped", "err", err)
		}
	}()
	if err := s.serveFunctionEndpoint(); err != nil {
		return nil, fmt.Errorf("serve the API to functions: %w", err)
	}
	if err := s.serveMetrics(reg); err != nil {
		return nil, err
	}
	if err := writeFileIfChanged(filepath.Join(cfg.DataDir, "endpoint"), []byte(s.Endpoint+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := writeAdminToken(cfg.DataDir); err != nil {
		return nil, err
	}
	s.front.SetReady(true)
	log.Info("lambdaplane is ready", "endpoint", s.Endpoint, "metrics", s.MetricsEndpoint, "account", acct.ID, "credentials", credPath)
	return s, nil
}

// serveMetrics serves reg's /metrics on Cfg.MetricsListen, a listener of
// its own: the API listener does not serve it.
func (s *Server) serveMetrics(reg *prometheus.Registry) error {
	if s.Cfg.MetricsListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.Cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("listen on %s for metrics: %w (pass --metrics-listen ADDR, or off)", s.Cfg.MetricsListen, err)
	}
	s.MetricsEndpoint = "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	go func() {
		if err := s.metrics.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server stopped", "err", err)
		}
	}()
	return nil
}

// Scheduler exposes the scheduler (tests, bench).
func (s *Server) Scheduler() *invoke.Scheduler { return s.sched }

// Router exposes the service router (tests).
func (s *Server) Router() *netdev.Router { return s.router }

// Sandbox returns the execution-environment manager (benchmarks read its
// pool level).
func (s *Server) Sandbox() *sandbox.Manager { return s.sandbox }

// Datapath exposes the VPC datapath reconciler (tests).
func (s *Server) Datapath() *datapath.Reconciler { return s.datapath }

// Roles exposes the IAM roles (tests create execution roles through it).
func (s *Server) Roles() *iam.Roles { return s.roles }

// Hyperplane exposes the ENI manager (tests, bench).
func (s *Server) Hyperplane() *hyperplane.Manager { return s.hyperplane }

// Accounts exposes the account registry.
func (s *Server) Accounts() *auth.Accounts { return s.accounts }

// Logs is the log store (tests read functions' stored logs through it).
func (s *Server) Logs() *logs.Store { return s.logs }

// Store is the durable state (tests check which streams an operation writes).
func (s *Server) Store() *store.Store { return s.st }

// Close stops serving and tears down every environment and the service
// network; durable state stays in the store. The host-wide claim of the
// prefix and service CIDR is given back last.
func (s *Server) Close() error {
	s.closeMu.Do(func() {
		var errs []error
		if s.front != nil {
			s.front.SetReady(false)
		}
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.http.Shutdown(ctx)
			cancel()
		} else if s.ln != nil {
			s.ln.Close()
		}
		if s.metrics != nil {
			_ = s.metrics.Close()
		}
		s.closeURLs()
		s.closeFunctionEndpoint()
		s.disk.close()
		if s.cluster != nil && s.cluster.place != nil {
			s.cluster.place.Close() // forwarded invokes finish first
		}
		s.triggers.close() // the pollers invoke through the scheduler
		if s.provision != nil {
			s.provision.Close()
		}
		if s.sched != nil {
			s.sched.Close()
		}
		if s.failover != nil {
			s.failover()
		}
		s.cluster.close()
		if s.logsAPI != nil {
			s.logsAPI.Close()
		}
		if s.logs != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.logs.Close(ctx)
			cancel()
		}
		if s.ctl != nil {
			s.ctl.Close()
		}
		if s.hyperplane != nil {
			errs = append(errs, s.hyperplane.Close())
		}
		if s.sandbox != nil {
			errs = append(errs, s.sandbox.Close())
		}
		if s.datapath != nil {
			errs = append(errs, s.datapath.Close())
		}
		if s.router != nil {
			errs = append(errs, s.router.Close())
		}
		if s.accounts != nil {
			s.accounts.Close()
		}
		if s.st != nil {
			s.st.Close()
		}
		errs = append(errs, s.host.release())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// isHomeFunc is provision's home test: whether this host is the home of
// a function (the first live host of its ranking, where placement runs
// its synchronous invokes); nil on a single host, where every function
// is.
func (s *Server) isHomeFunc() func(account, function string) bool {
	if s.cluster == nil {
		return nil
	}
	return func(account, function string) bool {
		r := s.cluster.members.Ranked(placement.HomeKey(account, function))
		return len(r) > 0 && r[0].ID == s.Cfg.HostID
	}
}
