package placement

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/cluster"
	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/invoke"
	"github.com/lambdaplane/lambdaplane/internal/store"
	"github.com/nats-io/nats.go"
)

// members is a fixed membership for tests.
type members struct {
	mu      sync.Mutex
	self    string
	live    []string
	quorate bool
}

func (m *members) Self() cluster.Host { return cluster.Host{ID: m.self} }
func (m *members) Live() []cluster.Host {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []cluster.Host
	for _, id := range m.live {
		out = append(out, cluster.Host{ID: id})
	}
	return out
}
func (m *members) Ranked(key string) []cluster.Host { return cluster.Rank(key, m.Live()) }
func (m *members) Quorate() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.quorate
}

func openConn(t *testing.T) *nats.Conn {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st.Conn()
}

func TestLedgerHoldsTheAccountLimitAcrossHosts(t *testing.T) {
	nc := openConn(t)
	live := []string{"h1", "h2", "h3"}
	var ls []*Ledger
	var ms []*members
	for _, id := range live {
		m := &members{self: id, live: live, quorate: true}
		l, err := NewLedger(m, nc, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ls, ms = append(ls, l), append(ms, m)
	}
	ctx := context.Background()
	const limit = 4
	taken := 0
	for i := 0; i < 12; i++ {
		if ls[i%3].Take(ctx, "acct", limit) {
			taken++
		}
	}
	if taken != limit {
		t.Fatalf("12 takes over three hosts with limit %d: %d admitted", limit, taken)
	}
	// Giving back makes room again (after the next renewal shrinks the
	// giver's lease, or at once on the giver).
	ls[0].Give("acct")
	if !ls[0].Take(ctx, "acct", limit) {
		t.Fatal("a slot given back on h1 could not be taken again on h1")
	}
	ls[0].Give("acct")
	deadline := time.Now().Add(5 * time.Second)
	for !ls[1].Take(ctx, "acct", limit) {
		if time.Now().After(deadline) {
			t.Fatal("a slot given back on h1 never became available to h2")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A host that cannot reach the ledger (here: it is no longer quorate
	// and the ledger is on it, or it is cut off) stops admitting once its
	// lease lapses.
	home := cluster.Rank(LedgerKey("acct"), ms[0].Live())[0].ID
	for i, m := range ms {
		if m.self == home {
			m.mu.Lock()
			m.quorate = false
			m.mu.Unlock()
			ls[i].Close()
		}
	}
	for i, l := range ls {
		if ms[i].self == home {
			continue
		}
		for l.Take(ctx, "acct", limit) {
		}
	}
	time.Sleep(LeaseTTL + time.Second)
	for i, l := range ls {
		if ms[i].self != home && l.Take(ctx, "acct", limit) {
			t.Errorf("%s admitted with its ledger host %s gone and its lease lapsed", ms[i].self, home)
		}
	}
}

type runner struct {
	mu   sync.Mutex
	host string
	n    int
}

func (r *runner) InvokeHere(ctx context.Context, q *invoke.Request, async bool) (*invoke.Response, error) {
	r.mu.Lock()
	r.n++
	r.mu.Unlock()
	if q.Function == "missing" {
		return nil, control.NotFound("Function not found: %s", q.Function)
	}
	return &invoke.Response{Status: 200, Payload: append([]byte("ran:"), q.Payload...), Host: r.host, RequestID: q.RequestID}, nil
}

type noReserve struct{}

func (noReserve) Reserved(string, string) *int { return nil }

func TestRouteForwardsToTheHomeAndSpillsWhenFull(t *testing.T) {
	nc := openConn(t)
	live := []string{"h1", "h2"}
	ps := map[string]*Placement{}
	rs := map[string]*runner{}
	for _, id := range live {
		p := New(Options{Members: &members{self: id, live: live, quorate: true}, Conn: nc, Control: noReserve{}, Capacity: 1})
		r := &runner{host: id}
		if err := p.Serve(r); err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ps[id], rs[id] = p, r
	}
	cfg := &control.Config{AccountID: "111111111111", FunctionName: "f", Timeout: 3}
	home := cluster.Rank(HomeKey(cfg.AccountID, cfg.FunctionName), []cluster.Host{{ID: "h1"}, {ID: "h2"}})[0].ID
	other := "h1"
	if home == "h1" {
		other = "h2"
	}
	ctx := context.Background()
	localRan := false
	resp, err := ps[other].Route(ctx, &invoke.Request{AccountID: cfg.AccountID, Function: "f", Payload: []byte("x"), RequestID: "r1"}, cfg,
		func(context.Context) (*invoke.Response, error) {
			localRan = true
			return nil, errors.New("must not run here")
		})
	if err != nil || localRan || resp.Host != home || string(resp.Payload) != "ran:x" {
		t.Fatalf("invoke through %s: resp %+v err %v ranHere %v (want run on the home %s)", other, resp, err, localRan, home)
	}
	// The home's domain errors come back as they are.
	_, err = ps[other].Route(ctx, &invoke.Request{AccountID: cfg.AccountID, Function: "missing", RequestID: "r2"}, cfg, nil)
	var ce *control.Error
	if !errors.As(err, &ce) || ce.Code != "ResourceNotFoundException" {
		t.Fatalf("forwarded not-found: %v", err)
	}
	// The home is full (capacity 1, one running): the next host runs it.
	ps[home].running.Add(1)
	resp, err = ps[other].Route(ctx, &invoke.Request{AccountID: cfg.AccountID, Function: "f", RequestID: "r3"}, cfg,
		func(context.Context) (*invoke.Response, error) {
			return &invoke.Response{Status: 200, Host: other}, nil
		})
	ps[home].running.Add(-1)
	if err != nil || resp.Host != other {
		t.Fatalf("with the home full: resp %+v err %v (want it spilled to %s)", resp, err, other)
	}
	// A home gone without membership noticing: "no responders", the next.
	ps[home].Close()
	resp, err = ps[other].Route(ctx, &invoke.Request{AccountID: cfg.AccountID, Function: "f", RequestID: "r4"}, cfg,
		func(context.Context) (*invoke.Response, error) {
			return &invoke.Response{Status: 200, Host: other}, nil
		})
	if err != nil || resp.Host != other {
		t.Fatalf("with the home gone: resp %+v err %v (want it run on %s)", resp, err, other)
	}
	// Not quorate: nothing is admitted.
	p := New(Options{Members: &members{self: "h9", live: []string{"h9"}, quorate: false}, Conn: nc, Control: noReserve{}})
	_, err = p.Route(ctx, &invoke.Request{AccountID: cfg.AccountID, Function: "f"}, cfg, nil)
	if !errors.As(err, &ce) || ce.Code != "TooManyRequestsException" {
		t.Fatalf("a host without a majority admitted: %v", err)
	}
}

func TestForwardTimeoutIsNotRetried(t *testing.T) {
	nc := openConn(t)
	live := []string{"h1", "h2"}
	cfg := &control.Config{AccountID: "111111111111", FunctionName: "slow", Timeout: 1}
	home := cluster.Rank(HomeKey(cfg.AccountID, cfg.FunctionName), []cluster.Host{{ID: "h1"}, {ID: "h2"}})[0].ID
	other := "h1"
	if home == "h1" {
		other = "h2"
	}
	// The home takes the request and never answers.
	sub, err := nc.Subscribe(invokeSubject(home), func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	p := New(Options{Members: &members{self: other, live: live, quorate: true}, Conn: nc, Control: noReserve{}, SetupWait: time.Millisecond, Slack: 500 * time.Millisecond})
	ranHere := false
	_, err = p.Route(context.Background(), &invoke.Request{AccountID: cfg.AccountID, Function: "slow", RequestID: "r"}, cfg,
		func(context.Context) (*invoke.Response, error) { ranHere = true; return &invoke.Response{}, nil })
	if err == nil || ranHere {
		t.Fatalf("a forwarded invoke that timed out: err %v, replayed here %v (want an error and no replay)", err, ranHere)
	}
}
