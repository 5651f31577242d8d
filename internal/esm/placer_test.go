package esm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lambdaplane/lambdaplane/internal/control"
	"github.com/lambdaplane/lambdaplane/internal/store"
)

// fakeQueue is an in-memory queue with visibility timeouts and long polls.
type fakeQueue struct {
	mu      sync.Mutex
	vis     time.Duration
	msgs    map[string]*fakeMsg
	order   []string
	wake    chan struct{}
	deleted map[string]int
	n       int
	// grants: who another account's queue's Policy lets poll it (role
	// ARNs or accounts).
	grants map[string]bool
}

type fakeMsg struct {
	id, body  string
	hidden    time.Time
	receives  int
	handle    string
	generated int
}

func newFakeQueue(vis time.Duration) *fakeQueue {
	return &fakeQueue{vis: vis, msgs: map[string]*fakeMsg{}, wake: make(chan struct{}), deleted: map[string]int{}, grants: map[string]bool{}}
}

func (q *fakeQueue) send(body string) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.n++
	id := fmt.Sprintf("msg-%d", q.n)
	q.msgs[id] = &fakeMsg{id: id, body: body}
	q.order = append(q.order, id)
	close(q.wake)
	q.wake = make(chan struct{})
	return id
}

func (q *fakeQueue) VisibilityTimeout(ctx context.Context, arn string) (time.Duration, error) {
	if arn != testQueue && arn != crossQueue {
		return 0, fmt.Errorf("%s: %w", arn, ErrNoQueue)
	}
	return q.vis, nil
}

func (q *fakeQueue) Refused(ctx context.Context, arn, acct, role string, actions []string) (string, error) {
	if arn != testQueue && arn != crossQueue {
		return "", fmt.Errorf("%s: %w", arn, ErrNoQueue)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if queueAccount(arn) == acct || q.grants[role] || q.grants[acct] {
		return "", nil
	}
	return actions[0], nil
}

func (q *fakeQueue) grant(who string, ok bool) {
	q.mu.Lock()
	q.grants[who] = ok
	q.mu.Unlock()
}

func (q *fakeQueue) Receive(ctx context.Context, arn string, max int, wait time.Duration) ([]Message, error) {
	deadline := time.Now().Add(wait)
	for {
		q.mu.Lock()
		var out []Message
		now := time.Now()
		for _, id := range q.order {
			m := q.msgs[id]
			if m == nil || now.Before(m.hidden) || len(out) >= max {
				continue
			}
			m.receives++
			m.generated++
			m.hidden = now.Add(q.vis)
			m.handle = id + "#" + strconv.Itoa(m.generated)
			out = append(out, Message{MessageID: id, ReceiptHandle: m.handle, Body: m.body,
				Attributes: map[string]string{"ApproximateReceiveCount": strconv.Itoa(m.receives)}})
		}
		wake := q.wake
		q.mu.Unlock()
		if len(out) > 0 || time.Now().After(deadline) {
			return out, nil
		}
		t := time.NewTimer(min(time.Until(deadline), 50*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

func (q *fakeQueue) Delete(ctx context.Context, arn string, handles []string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, h := range handles {
		for id, m := range q.msgs {
			if m.handle == h {
				delete(q.msgs, id)
				q.deleted[id]++
			}
		}
	}
	return nil
}

func (q *fakeQueue) left() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs)
}

type fakeFunctions struct{ reserved *int }

func (fakeFunctions) Resolve(acct, region, name, qualifier string) (*control.Config, error) {
	if name != "fn" {
		return nil, control.NotFound("Function not found: %s", name)
	}
	return &control.Config{FunctionName: name, AccountID: acct, Region: region, Role: "arn:aws:iam::" + acct + ":role/r"}, nil
}
func (f fakeFunctions) Reserved(acct, name string) *int { return f.reserved }

// fakeInvoker records events and answers with respond.
type fakeInvoker struct {
	mu      sync.Mutex
	seen    map[string]int // message id → invocations that carried it
	events  int
	respond func(ev Event) ([]byte, string, error)
}

func (f *fakeInvoker) Invoke(ctx context.Context, account, region, function, qualifier string, payload []byte) ([]byte, string, error) {
	var ev Event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, "", err
	}
	f.mu.Lock()
	f.events++
	for _, r := range ev.Records {
		f.seen[r.MessageID]++
	}
	respond := f.respond
	f.mu.Unlock()
	if respond != nil {
		return respond(ev)
	}
	return []byte("null"), "", nil
}

func (f *fakeInvoker) setRespond(fn func(ev Event) ([]byte, string, error)) {
	f.mu.Lock()
	f.respond = fn
	f.mu.Unlock()
}

const (
	testQueue  = "arn:aws:sqs:us-east-1:111111111111:q"
	crossQueue = "arn:aws:sqs:us-east-1:222222222222:q" // another account's
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func setup(t *testing.T, q *fakeQueue, inv *fakeInvoker, host string, st *store.Store) (*Service, *Placer) {
	t.Helper()
	fns := fakeFunctions{}
	svc, err := New(t.Context(), Options{Store: st, Queues: q, Functions: fns})
	if err != nil {
		t.Fatal(err)
	}
	p, err := StartPlacer(t.Context(), st, PlacerOptions{Service: svc, Queues: q, Functions: fns, Invoker: inv, HostID: host, Tick: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return svc, p
}

func TestMappingDeliversAndDeletes(t *testing.T) {
	st := openStore(t)
	q := newFakeQueue(time.Second)
	inv := &fakeInvoker{seen: map[string]int{}}
	svc, p := setup(t, q, inv, "h1", st)
	defer p.Close()
	ctx := t.Context()
	m, err := svc.Create(ctx, "111111111111", "us-east-1", &CreateInput{EventSourceArn: testQueue, FunctionName: "fn"})
	if err != nil {
		t.Fatal(err)
	}
	if m.State != StateCreating || m.BatchSize != 10 {
		t.Fatalf("created %+v", m)
	}
	eventually(t, 15*time.Second, "Enabled", func() bool { g, _ := svc.Get(ctx, "111111111111", m.UUID); return g.State == StateEnabled })
	for i := 0; i < 200; i++ {
		q.send(fmt.Sprintf(`{"i":%d}`, i))
	}
	eventually(t, 20*time.Second, "every message processed", func() bool { return q.left() == 0 })
	inv.mu.Lock()
	for id, n := range inv.seen {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	if len(inv.seen) != 200 {
		t.Errorf("%d messages delivered, want 200", len(inv.seen))
	}
	inv.mu.Unlock()

	// Duplicate and bad inputs.
	if _, err := svc.Create(ctx, "111111111111", "us-east-1", &CreateInput{EventSourceArn: testQueue, FunctionName: "fn"}); err == nil {
		t.Error("duplicate mapping created")
	}
	for _, in := range []CreateInput{
		{EventSourceArn: testQueue, FunctionName: "nope"},
		{EventSourceArn: "arn:aws:sqs:us-east-1:111111111111:other", FunctionName: "fn"},
		{EventSourceArn: "arn:aws:kinesis:us-east-1:111111111111:stream/s", FunctionName: "fn"},
		{EventSourceArn: testQueue, FunctionName: "fn", BatchSize: ptr(11)},
		{EventSourceArn: testQueue, FunctionName: "fn", BatchSize: ptr(10001), MaximumBatchingWindowInSeconds: ptr(1)},
		{EventSourceArn: testQueue, FunctionName: "fn", ScalingConfig: &ScalingConfig{MaximumConcurrency: ptr(1)}},
		{EventSourceArn: testQueue, FunctionName: "fn", FunctionResponseTypes: []string{"Nope"}},
	} {
		if _, err := svc.Create(ctx, "111111111111", "us-east-1", &in); err == nil {
			t.Errorf("create %+v accepted", in)
		}
	}

	// Disable: no more deliveries.
	if _, err := svc.Update(ctx, "111111111111", "us-east-1", m.UUID, &UpdateInput{Enabled: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "Disabled and stopped", func() bool {
		g, _ := svc.Get(ctx, "111111111111", m.UUID)
		return g.State == StateDisabled && len(p.Running()) == 0
	})
	q.send("late")
	time.Sleep(300 * time.Millisecond)
	if q.left() != 1 {
		t.Error("a disabled mapping delivered")
	}
	if _, err := svc.Delete(ctx, "111111111111", m.UUID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "deleted", func() bool { _, err := svc.Get(ctx, "111111111111", m.UUID); return err != nil })
}

func TestPartialFailuresAndFilters(t *testing.T) {
	st := openStore(t)
	q := newFakeQueue(300 * time.Millisecond)
	inv := &fakeInvoker{seen: map[string]int{}}
	inv.respond = func(ev Event) ([]byte, string, error) {
		var fails []map[string]string
		for _, r := range ev.Records {
			var b struct{ Fail bool }
			_ = json.Unmarshal([]byte(r.Body), &b)
			if b.Fail && r.Attributes["ApproximateReceiveCount"] == "1" {
				fails = append(fails, map[string]string{"itemIdentifier": r.MessageID})
			}
		}
		out, _ := json.Marshal(map[string]any{"batchItemFailures": fails})
		return out, "", nil
	}
	svc, p := setup(t, q, inv, "h1", st)
	defer p.Close()
	ctx := t.Context()
	pat := `{"body":{"keep":[true]}}`
	fc := &FilterCriteria{Filters: []struct {
		Pattern *string `json:"Pattern"`
	}{{Pattern: &pat}}}
	if _, err := svc.Create(ctx, "111111111111", "us-east-1", &CreateInput{EventSourceArn: testQueue, FunctionName: "fn",
		FunctionResponseTypes: []string{ReportBatchItemFailures}, FilterCriteria: fc}); err != nil {
		t.Fatal(err)
	}
	ok := q.send(`{"keep":true}`)
	fail := q.send(`{"keep":true,"fail":true}`)
	skip := q.send(`{"keep":false}`)
	eventually(t, 20*time.Second, "queue drained", func() bool { return q.left() == 0 })
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if inv.seen[ok] != 1 || inv.seen[fail] != 2 || inv.seen[skip] != 0 {
		t.Errorf("deliveries ok=%d fail=%d filtered=%d, want 1 2 0", inv.seen[ok], inv.seen[fail], inv.seen[skip])
	}
}

func TestLeaseTakeoverAndRestart(t *testing.T) {
	st := openStore(t)
	q := newFakeQueue(time.Second)
	inv1 := &fakeInvoker{seen: map[string]int{}}
	svc, p1 := setup(t, q, inv1, "h1", st)
	ctx := t.Context()
	m, err := svc.Create(ctx, "111111111111", "us-east-1", &CreateInput{EventSourceArn: testQueue, FunctionName: "fn"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "h1 polls", func() bool { return len(p1.Running()) == 1 })
	inv2 := &fakeInvoker{seen: map[string]int{}}
	_, p2 := setup(t, q, inv2, "h2", st)
	defer p2.Close()
	time.Sleep(600 * time.Millisecond)
	if len(p2.Running()) != 0 {
		t.Fatal("two servers poll one mapping")
	}
	// h1 dies without giving the lease back: h2 takes over within LeaseTTL.
	p1.cancel()
	p1.wg.Wait()
	for _, r := range p1.running {
		r.stop()
	}
	eventually(t, LeaseTTL+10*time.Second, "h2 takes over", func() bool { return len(p2.Running()) == 1 })
	id := q.send("after")
	eventually(t, 15*time.Second, "delivered by h2", func() bool { inv2.mu.Lock(); defer inv2.mu.Unlock(); return inv2.seen[id] == 1 })
	// A graceful close hands over at once.
	p2.Close()
	_, p3 := setup(t, q, inv1, "h3", st)
	defer p3.Close()
	eventually(t, 5*time.Second, "h3 takes over at once", func() bool { return len(p3.Running()) == 1 })
	_ = m
}

// LastProcessingResult follows what the last batch came to.
func TestLastProcessingResult(t *testing.T) {
	st := openStore(t)
	q := newFakeQueue(200 * time.Millisecond)
	inv := &fakeInvoker{seen: map[string]int{}}
	svc, p := setup(t, q, inv, "h1", st)
	defer p.Close()
	ctx := t.Context()
	m, err := svc.Create(ctx, "111111111111", "us-east-1", &CreateInput{EventSourceArn: testQueue, FunctionName: "fn"})
	if err != nil {
		t.Fatal(err)
	}
	if m.LastProcessingResult != ResultNone {
		t.Fatalf("new mapping: %q", m.LastProcessingResult)
	}
	result := func(want string) {
		t.Helper()
		eventually(t, 15*time.Second, "LastProcessingResult "+want, func() bool {
			g, err := svc.Get(ctx, "111111111111", m.UUID)
			return err == nil && g.LastProcessingResult == want
		})
	}
	q.send("a")
	result(ResultOK)
	inv.setRespond(func(Event) ([]byte, string, error) { return []byte(`{"errorMessage":"boom"}`), "Unhandled", nil })
	q.send("b")
	result(ResultFailed)
	inv.setRespond(func(Event) ([]byte, string, error) {
		return nil, "", &control.Error{Code: "TooManyRequestsException", Status: 429, Message: "Rate exceeded"}
	})
	result(ResultThrottled)
	inv.setRespond(nil)
	result(ResultOK)
	eventually(t, 15*time.Second, "queue drained", func() bool { return q.left() == 0 })
}

// A mapping on another account's queue needs the queue's Policy to grant
// the function's role: at create, and while it polls.
func TestCrossAccountQueuePolicy(t *testing.T) {
	st := openStore(t)
	q := newFakeQueue(200 * time.Millisecond)
	inv := &fakeInvoker{seen: map[string]int{}}
	svc, p := setup(t, q, inv, "h1", st)
	defer p.Close()
	ctx := t.Context()
	const role = "arn:aws:iam::111111111111:role/r"
	_, err := svc.Create(ctx, "111111111111", "us-east-1", &CreateInput{EventSourceArn: crossQueue, FunctionName: "fn"})
	if ce := (*control.Error)(nil); !errors.As(err, &ce) || ce.Code != "InvalidParameterValueException" || !strings.Contains(ce.Message, "ReceiveMessage") {
		t.Fatalf("create on a queue whose Policy grants nothing: %v", err)
	}
	q.grant(role, true)
	m, err := svc.Create(ctx, "111111111111", "us-east-1", &CreateInput{EventSourceArn: crossQueue, FunctionName: "fn"})
	if err != nil {
		t.Fatalf("create on a queue whose Policy grants the role: %v", err)
	}
	first := q.send("first")
	eventually(t, 15*time.Second, "delivered while granted", func() bool { inv.mu.Lock(); defer inv.mu.Unlock(); return inv.seen[first] == 1 })
	// The grant is withdrawn: polling stops, and the mapping says why.
	q.grant(role, false)
	eventually(t, 15*time.Second, "the refusal reported", func() bool {
		g, err := svc.Get(ctx, "111111111111", m.UUID)
		return err == nil && g.LastProcessingResult == resultNoAccess("sqs:ReceiveMessage")
	})
	late := q.send("late")
	time.Sleep(3 * policyRecheck)
	inv.mu.Lock()
	n := inv.seen[late]
	inv.mu.Unlock()
	if n != 0 {
		t.Fatal("a poller received from a queue whose Policy no longer grants it")
	}
	// Granted to the account instead: polling resumes.
	q.grant("111111111111", true)
	eventually(t, 15*time.Second, "delivered once granted again", func() bool { inv.mu.Lock(); defer inv.mu.Unlock(); return inv.seen[late] == 1 })
}

// Concurrent creates of one queue and function's mapping, on two servers'
// services: exactly one wins; once it is deleted the pair is free again.
func TestConcurrentCreatesOneMapping(t *testing.T) {
	st := openStore(t)
	q := newFakeQueue(time.Second)
	inv := &fakeInvoker{seen: map[string]int{}}
	svc, p := setup(t, q, inv, "h1", st)
	defer p.Close()
	svc2, err := New(t.Context(), Options{Store: st, Queues: q, Functions: fakeFunctions{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []string
	var conflicts int
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := svc
			if i%2 == 1 {
				s = svc2
			}
			m, err := s.Create(ctx, "111111111111", "us-east-1", &CreateInput{EventSourceArn: testQueue, FunctionName: "fn"})
			mu.Lock()
			defer mu.Unlock()
			var ce *control.Error
			switch {
			case err == nil:
				won = append(won, m.UUID)
			case errors.As(err, &ce) && ce.Code == "ResourceConflictException":
				conflicts++
			default:
				t.Errorf("create: %v", err)
			}
		}()
	}
	wg.Wait()
	if len(won) != 1 || conflicts != 15 {
		t.Fatalf("%d creates won (%v), %d conflicts; want 1 and 15", len(won), won, conflicts)
	}
	l, _, err := svc.List(ctx, "111111111111", "us-east-1", testQueue, "", "", 100)
	if err != nil || len(l) != 1 {
		t.Fatalf("%d mappings listed (%v)", len(l), err)
	}
	if _, err := svc.Delete(ctx, "111111111111", won[0]); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "deleted", func() bool { _, err := svc.Get(ctx, "111111111111", won[0]); return err != nil })
	if _, err := svc2.Create(ctx, "111111111111", "us-east-1", &CreateInput{EventSourceArn: testQueue, FunctionName: "fn"}); err != nil {
		t.Fatalf("create after the delete: %v", err)
	}
}
