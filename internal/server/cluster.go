package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/api"
	"github.com/lambdaplane/lambdaplane/internal/auth"
	"github.com/lambdaplane/lambdaplane/internal/cluster"
	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
	"github.com/lambdaplane/lambdaplane/internal/placement"
	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go"
)

// clusterParts are a cluster member's parts (nil fields on a single host).
type clusterParts struct {
	creds   *roleCredentials // the environments' credentials (standby primes them)
	stop    chan struct{}
	wg      sync.WaitGroup
	members *cluster.Membership
	place   *placement.Placement
	ledger  *placement.Ledger
	barrier *placement.Barrier
	status  *nats.Subscription
}

// storeOptions are the store's options for cfg.
func storeOptions(cfg Config) store.Options {
	o := store.Options{DataDir: cfg.DataDir, URL: cfg.NATSURL, AcceptDataLoss: cfg.AcceptDataLoss, Replicas: cfg.StoreReplicas, SyncInterval: cfg.StoreSyncInterval}
	if cfg.Clustered && cfg.ClusterListen != "" {
		o.Cluster = store.ClusterOptions{ServerName: "lp-" + cfg.HostID, Listen: cfg.ClusterListen, Peers: cfg.ClusterPeers, ClientListen: cfg.ClusterClientListen}
	}
	return o
}

// openClusterStore opens a cluster member's store before the host claim:
// the member's service CIDR is its leased slice of the cluster's.
func (s *Server) openClusterStore(ctx context.Context, cfg *Config) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory %s: %w", cfg.DataDir, err)
	}
	t := time.Now()
	s.log.Info("opening the cluster's store...", "host", cfg.HostID, "cluster-listen", cfg.ClusterListen, "peers", cfg.ClusterPeers, "nats-url", cfg.NATSURL)
	o := storeOptions(*cfg)
	o.Logger = s.log
	var err error
	if s.st, err = store.Open(ctx, o); err != nil {
		return err
	}
	s.log.Info("opening the cluster's store done", "took", time.Since(t).Round(time.Millisecond), "replicas", s.st.Replicas())
	slice, err := cluster.LeaseSlice(ctx, s.st.JetStream(), s.st.Replicas(), cfg.HostID, cfg.ServiceCIDR)
	if err != nil {
		return err
	}
	s.log.Info("leased this host's slice of the service CIDR", "cluster", cfg.ServiceCIDR, "slice", slice)
	cfg.ServiceCIDR = slice
	cfg.AutoServiceCIDR = false
	return nil
}

// joinCluster writes this host's record and starts heartbeats, placement
// and the account ledger.
func (s *Server) joinCluster(ctx context.Context, cfg Config) error {
	var err error
	c := &clusterParts{}
	s.cluster = c
	if c.members, err = cluster.Join(ctx, cluster.Options{
		Self: cluster.Host{ID: cfg.HostID, API: "http://" + cfg.Listen, Underlay: cfg.Underlay, ServiceCIDR: cfg.ServiceCIDR.String(),
			Prefix: cfg.Prefix, Capacity: cfg.HostCapacity},
		Conn: s.st.Conn(), JetStream: s.st.JetStream(), Replicas: s.st.Replicas(), Logger: s.log,
	}); err != nil {
		return err
	}
	if c.ledger, err = placement.NewLedger(c.members, s.st.Conn(), s.log); err != nil {
		return err
	}
	return nil
}

// serveCluster answers other hosts (forwarded invokes, barriers, status)
// once the scheduler runs.
func (s *Server) serveCluster() error {
	c := s.cluster
	if err := c.place.Serve(s.sched); err != nil {
		return err
	}
	var err error
	if c.barrier, err = placement.NewBarrier(c.members, s.st.Conn(), s.ctl, s.log); err != nil {
		return err
	}
	c.status, err = s.st.Conn().Subscribe(statusSubject(s.Cfg.HostID), func(m *nats.Msg) {
		b, _ := json.Marshal(s.localStatus())
		_ = m.Respond(b)
	})
	if err != nil {
		return err
	}
	c.stop = make(chan struct{})
	c.wg.Add(1)
	go s.standby()
	return nil
}

// standby prepares, ahead of need, every function this host is home or
// next in line for: its code unpacked here and its execution role's
// credentials issued, so that when the home dies the first invoke on this
// host is a cold start that reads nothing from the store (whose writes
// stall while it elects new leaders). Runs after each membership change
// and every 10 s; cheap when everything is ready.
func (s *Server) standby() {
	c := s.cluster
	defer c.wg.Done()
	changes, unsub := c.members.Subscribe()
	defer unsub()
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		for _, cfg := range s.ctl.Latest() {
			select {
			case <-c.stop:
				return
			default:
			}
			if !s.standsBy(cfg) || cfg.CodeKey == "" {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if _, err := s.ctl.CodeDir(ctx, cfg); err != nil {
				s.log.Debug("standby: unpacking code failed", "function", cfg.FunctionName, "err", err)
			}
			if c.creds != nil && cfg.Role != "" {
				if _, err := c.creds.get(ctx, cfg); err != nil {
					s.log.Debug("standby: credentials failed", "function", cfg.FunctionName, "err", err)
				}
			}
			cancel()
		}
		select {
		case <-c.stop:
			return
		case <-changes:
		case <-t.C:
		}
	}
}

// standsBy reports whether this host is home or next in line for cfg's
// function (always, on a single host).
func (s *Server) standsBy(cfg *control.Config) bool {
	if s.cluster == nil {
		return true
	}
	ranked := s.cluster.members.Ranked(placement.HomeKey(cfg.AccountID, cfg.FunctionName))
	for i := 0; i < len(ranked) && i < 2; i++ {
		if ranked[i].ID == s.Cfg.HostID {
			return true
		}
	}
	return false
}

// primeCredentials issues, ahead of its first cold start, the execution
// role session of a function whose records just changed, when this host
// stands by for it.
func (s *Server) primeCredentials(rc *roleCredentials, account, name string) {
	if s.ctl == nil {
		return
	}
	cfg, err := s.ctl.Resolve(account, s.Cfg.Region, name, "")
	if err != nil || !s.standsBy(cfg) {
		return
	}
	rc.prime(cfg, s.log)
}

func (c *clusterParts) close() {
	if c == nil {
		return
	}
	if c.stop != nil {
		close(c.stop)
		c.wg.Wait()
	}
	if c.status != nil {
		_ = c.status.Unsubscribe()
	}
	if c.barrier != nil {
		c.barrier.Close()
	}
	if c.place != nil {
		c.place.Close()
	}
	if c.ledger != nil {
		c.ledger.Close()
	}
	if c.members != nil {
		c.members.Close()
	}
}

// Members is the cluster membership (nil on a single host).
func (s *Server) Members() *cluster.Membership {
	if s.cluster == nil {
		return nil
	}
	return s.cluster.members
}

func statusSubject(host string) string { return "lp.status." + host }

// HostStatus is one host in `lambdaplane cluster status`.
type HostStatus struct {
	cluster.Status
	Reachable    bool   `json:"reachable"`
	Environments int    `json:"environments"`
	Busy         int    `json:"busy"`
	Forwarded    uint64 `json:"forwarded"`
	Served       uint64 `json:"served"`
	Spilled      uint64 `json:"spilled"`
	Ran          uint64 `json:"ran"`
}

// ClusterStatus is the answer of GET /_lambdaplane/cluster.
type ClusterStatus struct {
	Host     string       `json:"host"` // the host that answered
	Leader   string       `json:"leader"`
	Quorate  bool         `json:"quorate"`
	Replicas int          `json:"replicas"`
	Hosts    []HostStatus `json:"hosts"`
	// Streams is every stream and bucket of the store with its replicas.
	Streams []StreamStatus `json:"streams"`
	// ENIs is every Hyperplane ENI of the cluster with its home host.
	ENIs []ENIStatus `json:"enis,omitempty"`
}

// ENIStatus is one Hyperplane ENI: where its address, SNAT and
// conntrack live.
type ENIStatus struct {
	ID        string `json:"id"`
	AccountID string `json:"account"`
	SubnetID  string `json:"subnet"`
	Address   string `json:"address"`
	Home      string `json:"home"`
	HomeAlive bool   `json:"homeAlive"`
}

// StreamStatus is one stream's (or bucket's) replication.
type StreamStatus struct {
	Name     string `json:"name"`
	Replicas int    `json:"replicas"` // configured
	Leader   string `json:"leader,omitempty"`
	// Current counts the replicas that are current: the leader plus every
	// follower that is caught up.
	Current int `json:"current"`
}

type localStatus struct {
	Environments, Busy              int
	Forwarded, Served, Spilled, Ran uint64
}

func (s *Server) localStatus() localStatus {
	st := s.sched.Stats()
	l := localStatus{Environments: st.Environments, Busy: st.Busy}
	if s.cluster != nil && s.cluster.place != nil {
		l.Forwarded, l.Served, l.Spilled, l.Ran = s.cluster.place.Stats()
	}
	return l
}

// clusterStatus gathers every known host's state (each live host answers
// for its environments).
func (s *Server) clusterStatus(ctx context.Context) ClusterStatus {
	out := ClusterStatus{Host: s.Cfg.HostID, Replicas: s.st.Replicas(), Quorate: true}
	if s.cluster == nil {
		l := s.localStatus()
		out.Leader = s.Cfg.HostID
		out.Hosts = []HostStatus{{Status: cluster.Status{Host: cluster.Host{ID: s.Cfg.HostID, API: s.Endpoint, ServiceCIDR: s.Cfg.ServiceCIDR.String(), Prefix: s.Cfg.Prefix}, Alive: true, Leader: true},
			Reachable: true, Environments: l.Environments, Busy: l.Busy}}
		return out
	}
	m := s.cluster.members
	out.Leader, out.Quorate = m.Leader(), m.Quorate()
	hosts := m.Hosts()
	out.Hosts = make([]HostStatus, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		out.Hosts[i].Status = h
		if !h.Alive {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			msg, err := s.st.Conn().RequestWithContext(rctx, statusSubject(h.ID), nil)
			var l localStatus
			if err != nil || json.Unmarshal(msg.Data, &l) != nil {
				return
			}
			hs := &out.Hosts[i]
			hs.Reachable, hs.Environments, hs.Busy, hs.Forwarded, hs.Served, hs.Spilled, hs.Ran = true, l.Environments, l.Busy, l.Forwarded, l.Served, l.Spilled, l.Ran
		}()
	}
	wg.Wait()
	out.Streams = s.streamStatus(ctx)
	out.ENIs = s.eniStatus()
	return out
}

// eniStatus lists the Hyperplane ENIs this host's manager follows (every
// ENI of the cluster) with their recorded homes.
func (s *Server) eniStatus() []ENIStatus {
	if s.hyperplane == nil {
		return nil
	}
	var out []ENIStatus
	for _, e := range s.hyperplane.ENIs() {
		if e.PerEnv {
			continue
		}
		st := ENIStatus{ID: e.ID, AccountID: e.AccountID, SubnetID: e.SubnetID, Address: e.Addr.String(), Home: s.hyperplane.Home(e.ID)}
		st.HomeAlive = st.Home != "" && s.cluster.members.Alive(st.Home)
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ENIStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (s *Server) streamStatus(ctx context.Context) []StreamStatus {
	var out []StreamStatus
	lister := s.st.JetStream().ListStreams(ctx)
	for info := range lister.Info() {
		st := StreamStatus{Name: info.Config.Name, Replicas: info.Config.Replicas}
		if info.Cluster != nil {
			st.Leader = info.Cluster.Leader
			if st.Leader != "" {
				st.Current = 1
			}
			for _, p := range info.Cluster.Replicas {
				if p.Current && !p.Offline {
					st.Current++
				}
			}
		} else {
			st.Current = 1
		}
		out = append(out, st)
	}
	return out
}

// clusterFront wraps the Lambda API of a cluster member: it serves GET
// /_lambdaplane/cluster, and answers a control-plane write only once every
// live host holds it (placement.Barrier).
type clusterFront struct {
	api.Service
	s *Server
}

// Unwrap is the Lambda service (the front asks it for condition keys).
func (f clusterFront) Unwrap() api.Service { return f.Service }

func (f clusterFront) ServeAWS(w http.ResponseWriter, r *http.Request, id auth.Identity, body []byte) {
	if r.URL.Path == "/_lambdaplane/cluster" {
		if r.Method != http.MethodGet {
			http.Error(w, `{"Type":"User","Message":"use GET"}`, http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(f.s.clusterStatus(r.Context()))
		return
	}
	c := f.s.cluster
	if c == nil || c.barrier == nil || r.Method == http.MethodGet || r.Method == http.MethodHead ||
		strings.HasSuffix(r.URL.Path, "invocations") || strings.HasSuffix(r.URL.Path, "/invoke-async") {
		f.Service.ServeAWS(w, r, id, body)
		return
	}
	bw := &barrierWriter{ResponseWriter: w, ctx: r.Context(), b: c.barrier}
	f.Service.ServeAWS(bw, r, id, body)
}

// barrierWriter holds a successful write's answer until the barrier.
type barrierWriter struct {
	http.ResponseWriter
	ctx     context.Context
	b       *placement.Barrier
	written bool
}

func (w *barrierWriter) WriteHeader(code int) {
	if !w.written {
		w.written = true
		if code < 300 {
			w.b.Wait(w.ctx)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *barrierWriter) Write(p []byte) (int, error) {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Placement options for the scheduler (nil on a single host).
func (s *Server) schedPlacement() (invoke.Placement, invoke.AccountSlots) {
	if s.cluster == nil {
		return nil, nil
	}
	return s.cluster.place, s.cluster.ledger
}

// buildPlacement makes the invoke router once the control plane exists.
func (s *Server) buildPlacement(cfg Config) {
	if s.cluster == nil {
		return
	}
	s.cluster.place = placement.New(placement.Options{
		Members: s.cluster.members, Conn: s.st.Conn(), Control: s.ctl, Capacity: cfg.HostCapacity, Logger: s.log,
	})
}

// ensureFirst is Accounts.EnsureFirst, tried again for a while on a
// cluster: hosts started together race to create the first account, a
// loser may read a replica that has not seen the winner's record yet (the
// store reads from a replica while a stream elects its leader, as streams
// just created on a loaded machine do), so it finds the winner's access
// key taken (ErrExists) but cannot read it yet, and a cluster that has
// just formed may time out its first writes. EnsureFirst is idempotent.
func ensureFirst(ctx context.Context, a *auth.Accounts, clustered bool) (*auth.Account, bool, error) {
	for attempt := 0; ; attempt++ {
		acct, created, err := a.EnsureFirst(ctx)
		transient := errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
		if err == nil || !clustered || !transient || attempt >= 40 || ctx.Err() != nil {
			return acct, created, err
		}
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
