package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Host is one host's record in the bucket cluster_hosts.
type Host struct {
	ID    string `json:"id"`
	Epoch uint64 `json:"epoch"`
	// API is the Lambda/EC2 API address (http://host:port).
	API string `json:"api"`
	// Underlay is the address other hosts reach this one at (routes,
	// tunnels).
	Underlay string `json:"underlay,omitempty"`
	// ServiceCIDR is this host's slice of the cluster's service CIDR.
	ServiceCIDR string `json:"serviceCidr,omitempty"`
	// Prefix is this host's kernel object prefix.
	Prefix string `json:"prefix,omitempty"`
	// Capacity is how many invocations this host runs at once before it
	// spills to the next-ranked host (0 = no bound).
	Capacity int       `json:"capacity,omitempty"`
	Started  time.Time `json:"started"`
}

// Status is a known host as this host sees it.
type Status struct {
	Host
	Alive    bool      `json:"alive"`
	Leader   bool      `json:"leader"`
	LastSeen time.Time `json:"lastSeen,omitzero"`
}

// Options configures Join.
type Options struct {
	// Self is this host's record; Epoch and Started are filled by Join.
	Self      Host
	Conn      *nats.Conn
	JetStream jetstream.JetStream
	// Replicas of the cluster's buckets (the store's replica count).
	Replicas int
	Logger   *slog.Logger

	Heartbeat time.Duration // default 500 ms
	DeadAfter time.Duration // default 3 s
	LeaderTTL time.Duration // default 3 s
}

// Subjects and buckets.
const (
	hbSubject    = "lp.cluster.hb"
	hostsBucket  = "cluster_hosts"
	leaderBucket = "cluster_leader"
	leaderKey    = "leader"
)

var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,30}$`)

// ValidID reports why id cannot be a host id (nil if it can).
func ValidID(id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("--host-id %q: use 1-31 lower-case letters, digits and dashes, starting with a letter or digit (e.g. h1)", id)
	}
	return nil
}

type heartbeat struct {
	ID    string `json:"id"`
	Epoch uint64 `json:"epoch"`
}

type leaderRec struct {
	ID    string `json:"id"`
	Epoch uint64 `json:"epoch"`
}

// Membership is this host's view of the cluster.
type Membership struct {
	o     Options
	log   *slog.Logger
	self  Host
	hosts jetstream.KeyValue
	lead  jetstream.KeyValue

	mu       sync.Mutex
	records  map[string]Host
	seen     map[string]time.Time // id -> last heartbeat of its current epoch
	alive    []string             // sorted live ids at the last check
	leader   string
	leaderAt uint64 // revision of our leader key, when we hold it
	fenced   bool
	subs     map[chan struct{}]struct{}

	sub    *nats.Subscription
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Join writes this host's record with a new epoch, starts its heartbeats
// and the leader election, and returns once the records are loaded.
func Join(ctx context.Context, o Options) (*Membership, error) {
	if err := ValidID(o.Self.ID); err != nil {
		return nil, err
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 500 * time.Millisecond
	}
	if o.DeadAfter == 0 {
		o.DeadAfter = 3 * time.Second
	}
	if o.LeaderTTL == 0 {
		o.LeaderTTL = 3 * time.Second
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	m := &Membership{o: o, log: o.Logger, records: map[string]Host{}, seen: map[string]time.Time{}, subs: map[chan struct{}]struct{}{}}
	var err error
	if m.hosts, err = o.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: hostsBucket, History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", hostsBucket, err)
	}
	if m.lead, err = o.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: leaderBucket, History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas, TTL: o.LeaderTTL,
	}); err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", leaderBucket, err)
	}
	// A new epoch: every record of an earlier run of this id is stale.
	self := o.Self
	self.Started = time.Now().UTC()
	for attempt := 0; ; attempt++ {
		var rev uint64
		self.Epoch = 1
		if e, err := m.hosts.Get(ctx, self.ID); err == nil {
			var old Host
			if json.Unmarshal(e.Value(), &old) == nil {
				self.Epoch = old.Epoch + 1
			}
			rev = e.Revision()
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("read host record %s: %w", self.ID, err)
		}
		b, _ := json.Marshal(self)
		if rev == 0 {
			_, err = m.hosts.Create(ctx, self.ID, b)
		} else {
			_, err = m.hosts.Update(ctx, self.ID, b, rev)
		}
		if err == nil {
			break
		}
		if attempt > 20 {
			return nil, fmt.Errorf("write host record %s: %w", self.ID, err)
		}
	}
	m.self = self
	m.records[self.ID] = self
	m.seen[self.ID] = time.Now()
	m.alive = []string{self.ID}

	if m.sub, err = o.Conn.Subscribe(hbSubject, m.onHeartbeat); err != nil {
		return nil, fmt.Errorf("subscribe to heartbeats: %w", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	w, err := m.hosts.WatchAll(rctx)
	if err != nil {
		cancel()
		_ = m.sub.Unsubscribe()
		return nil, fmt.Errorf("watch %s: %w", hostsBucket, err)
	}
	ready := make(chan struct{})
	m.wg.Add(1)
	go m.watchRecords(w, ready)
	select {
	case <-ready:
	case <-ctx.Done():
		m.Close()
		return nil, ctx.Err()
	}
	m.beat()
	m.wg.Add(2)
	go m.heartbeats(rctx)
	go m.elect(rctx)
	m.log.Info("joined the cluster", "host", self.ID, "epoch", self.Epoch, "replicas", o.Replicas)
	return m, nil
}

func (m *Membership) watchRecords(w jetstream.KeyWatcher, ready chan struct{}) {
	defer m.wg.Done()
	defer w.Stop()
	once := false
	for e := range w.Updates() {
		if e == nil {
			if !once {
				once = true
				close(ready)
			}
			continue
		}
		m.mu.Lock()
		switch e.Operation() {
		case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
			if e.Key() != m.self.ID {
				delete(m.records, e.Key())
				delete(m.seen, e.Key())
			}
		default:
			var h Host
			if json.Unmarshal(e.Value(), &h) == nil && h.ID == e.Key() {
				old, had := m.records[h.ID]
				if h.ID == m.self.ID && h.Epoch > m.self.Epoch && !m.fenced {
					m.fenced = true
					m.log.Error("this host's id was taken by a newer start (higher epoch): this process is stale and stops admitting work", "host", h.ID, "ours", m.self.Epoch, "newer", h.Epoch)
				}
				if !had || h.Epoch >= old.Epoch {
					if h.ID != m.self.ID {
						m.records[h.ID] = h
						if had && h.Epoch > old.Epoch {
							delete(m.seen, h.ID) // alive again once this epoch beats
						}
					} else if h.Epoch == m.self.Epoch {
						m.records[h.ID] = h
					}
				}
			}
		}
		m.mu.Unlock()
		m.check()
	}
	if !once {
		close(ready)
	}
}

func (m *Membership) onHeartbeat(msg *nats.Msg) {
	var hb heartbeat
	if json.Unmarshal(msg.Data, &hb) != nil || hb.ID == "" {
		return
	}
	m.mu.Lock()
	rec, ok := m.records[hb.ID]
	if ok && hb.Epoch < rec.Epoch {
		m.mu.Unlock()
		return // a stale process of a host that restarted: fenced
	}
	if hb.ID == m.self.ID && hb.Epoch > m.self.Epoch && !m.fenced {
		m.fenced = true
		m.log.Error("another process beats with this host's id and a newer epoch: this one is stale and stops admitting work", "host", hb.ID)
	}
	if !ok || hb.Epoch == rec.Epoch {
		m.seen[hb.ID] = time.Now()
	}
	m.mu.Unlock()
}

func (m *Membership) beat() {
	b, _ := json.Marshal(heartbeat{ID: m.self.ID, Epoch: m.self.Epoch})
	_ = m.o.Conn.Publish(hbSubject, b)
}

func (m *Membership) heartbeats(ctx context.Context) {
	defer m.wg.Done()
	t := time.NewTicker(m.o.Heartbeat)
	defer t.Stop()
	check := time.NewTicker(m.o.Heartbeat / 2)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.beat()
		case <-check.C:
			m.check()
		}
	}
}

// check recomputes the live set and tells subscribers when it changed.
func (m *Membership) check() {
	now := time.Now()
	m.mu.Lock()
	m.seen[m.self.ID] = now
	var alive []string
	for id := range m.records {
		if t, ok := m.seen[id]; ok && now.Sub(t) < m.o.DeadAfter {
			alive = append(alive, id)
		}
	}
	slices.Sort(alive)
	changed := !slices.Equal(alive, m.alive)
	if changed {
		m.log.Info("cluster membership changed", "alive", alive, "was", m.alive)
		m.alive = alive
	}
	m.mu.Unlock()
	if changed {
		m.notify()
	}
}

func (m *Membership) notify() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range m.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// elect keeps or takes the leader key.
func (m *Membership) elect(ctx context.Context) {
	defer m.wg.Done()
	t := time.NewTicker(m.o.LeaderTTL / 3)
	defer t.Stop()
	for {
		m.electOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Membership) electOnce(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, m.o.LeaderTTL/3)
	defer cancel()
	m.mu.Lock()
	rev, fenced := m.leaderAt, m.fenced
	m.mu.Unlock()
	b, _ := json.Marshal(leaderRec{ID: m.self.ID, Epoch: m.self.Epoch})
	var leader string
	var held uint64
	if fenced {
		leader = ""
	} else if rev != 0 {
		if nrev, err := m.lead.Update(cctx, leaderKey, b, rev); err == nil {
			leader, held = m.self.ID, nrev
		}
	} else if nrev, err := m.lead.Create(cctx, leaderKey, b); err == nil {
		leader, held = m.self.ID, nrev
	}
	if held == 0 {
		if e, err := m.lead.Get(cctx, leaderKey); err == nil {
			var lr leaderRec
			if json.Unmarshal(e.Value(), &lr) == nil {
				leader = lr.ID
				if lr.ID == m.self.ID && lr.Epoch == m.self.Epoch && !fenced {
					held = e.Revision() // ours (a refresh whose answer was lost)
				}
			}
		} else if rev != 0 {
			leader = ""
		}
	}
	m.mu.Lock()
	was := m.leader
	m.leader, m.leaderAt = leader, held
	m.mu.Unlock()
	if was != leader {
		m.log.Info("cluster leader changed", "leader", leader, "was", was)
		m.notify()
	}
}

// Self is this host's record.
func (m *Membership) Self() Host { return m.self }

// Live is the live hosts, sorted by id; this host is always among them.
func (m *Membership) Live() []Host {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Host, 0, len(m.alive))
	for _, id := range m.alive {
		out = append(out, m.records[id])
	}
	return out
}

// Hosts is every known host, sorted by id.
func (m *Membership) Hosts() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, 0, len(m.records))
	for id, h := range m.records {
		out = append(out, Status{Host: h, Alive: slices.Contains(m.alive, id), Leader: id == m.leader, LastSeen: m.seen[id]})
	}
	slices.SortFunc(out, func(a, b Status) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}

// Alive reports whether host id is alive.
func (m *Membership) Alive(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Contains(m.alive, id)
}

// IsLeader reports whether this host holds the leader key.
func (m *Membership) IsLeader() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leader == m.self.ID && m.leaderAt != 0
}

// Leader is the current leader's id, "" while none is known.
func (m *Membership) Leader() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leader
}

// Fenced reports whether a newer start of this host's id replaced this
// process.
func (m *Membership) Fenced() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fenced
}

// Quorate reports whether this host sees a strict majority of the known
// hosts alive (itself included) and is not fenced: a partitioned minority
// is not.
func (m *Membership) Quorate() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.fenced && 2*len(m.alive) > len(m.records)
}

// Home is the live host key is homed on.
func (m *Membership) Home(key string) Host { return m.Ranked(key)[0] }

// Ranked is every live host in key's rendezvous order, best first.
func (m *Membership) Ranked(key string) []Host { return Rank(key, m.Live()) }

// Subscribe returns a channel that receives a tick (coalesced) whenever
// the live set or the leader changes, and a function that stops it.
func (m *Membership) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		delete(m.subs, ch)
		m.mu.Unlock()
	}
}

// Forget removes a dead host's record (an operator removing a host for
// good); a live host cannot be forgotten.
func (m *Membership) Forget(ctx context.Context, id string) error {
	if m.Alive(id) {
		return fmt.Errorf("host %s is alive: stop it before removing it from the cluster", id)
	}
	return m.hosts.Purge(ctx, id)
}

// Close stops heartbeats and hands the leader key back (the record stays:
// the host is known, and dead, until it starts again).
func (m *Membership) Close() {
	if m.cancel != nil {
		m.cancel()
	}
	if m.sub != nil {
		_ = m.sub.Unsubscribe()
	}
	m.wg.Wait()
	m.mu.Lock()
	rev := m.leaderAt
	m.leaderAt = 0
	m.mu.Unlock()
	if rev != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = m.lead.Delete(ctx, leaderKey, jetstream.LastRevision(rev))
		cancel()
	}
}
