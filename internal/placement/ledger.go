package placement

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// LeaseTTL is how long a lease of account slots holds without renewal.
const LeaseTTL = 3 * time.Second

// renewEvery is how often a host renews its leases.
const renewEvery = time.Second

func ledgerSubject(host string) string { return "lp.ledger." + host }

// LedgerKey is the rendezvous key of an account's ledger.
func LedgerKey(account string) string { return "ledger/" + account }

type leaseReq struct {
	Host    string `json:"h"`
	Account string `json:"a"`
	Limit   int    `json:"l"`
	Need    int    `json:"n"` // slots this host must hold (in use, plus the one it asks for)
	Want    int    `json:"w"` // slots it would like to hold, headroom included
	Hosts   int    `json:"k"` // live hosts it sees
}

type leaseResp struct {
	Granted int    `json:"g"` // slots this host holds, in total
	TTLms   int64  `json:"t"`
	Err     string `json:"e,omitempty"`
}

// held is one host's lease at the ledger.
type held struct {
	n       int
	expires time.Time
}

// lease is this host's lease of one account's slots.
type lease struct {
	granted int
	used    int
	lastUse time.Time
	expires time.Time
	asking  chan struct{} // closed when an in-flight request ends
}

// Ledger implements invoke.AccountSlots.
type Ledger struct {
	m    Members
	nc   *nats.Conn
	log  *slog.Logger
	self string

	mu     sync.Mutex
	leases map[string]*lease          // account -> this host's lease
	book   map[string]map[string]held // account -> host -> lease (as ledger host)
	limits map[string]int             // account -> limit (for renewals)

	sub    *nats.Subscription
	stop   chan struct{}
	wg     sync.WaitGroup
	closed sync.Once
}

// NewLedger starts answering lease requests for the accounts this host
// keeps the ledger of, and renewing this host's own leases.
func NewLedger(m Members, nc *nats.Conn, log *slog.Logger) (*Ledger, error) {
	if log == nil {
		log = slog.Default()
	}
	l := &Ledger{m: m, nc: nc, log: log, self: m.Self().ID, leases: map[string]*lease{},
		book: map[string]map[string]held{}, limits: map[string]int{}, stop: make(chan struct{})}
	sub, err := nc.Subscribe(ledgerSubject(l.self), l.answer)
	if err != nil {
		return nil, fmt.Errorf("subscribe to lease requests: %w", err)
	}
	l.sub = sub
	l.wg.Add(1)
	go l.renewer()
	return l, nil
}

// headroom is how many slots beyond those in use a host keeps leased, so
// that a new invocation rarely waits for the ledger.
func headroom(limit, hosts int) int {
	return max(1, limit/(8*max(1, hosts)))
}

// Take implements invoke.AccountSlots.
func (l *Ledger) Take(ctx context.Context, account string, limit int) bool {
	for attempt := 0; attempt < 2; attempt++ {
		l.mu.Lock()
		ls := l.leases[account]
		if ls == nil {
			ls = &lease{}
			l.leases[account] = ls
		}
		l.limits[account] = limit
		now := time.Now()
		if now.After(ls.expires) {
			ls.granted = 0 // lapsed: nothing is ours until the ledger says so
		}
		ls.lastUse = now
		if ls.used < ls.granted {
			ls.used++
			l.mu.Unlock()
			return true
		}
		if attempt == 1 {
			l.mu.Unlock()
			return false
		}
		if ls.asking != nil {
			ch := ls.asking
			l.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return false
			}
			attempt = -1 // look again without spending the request
			continue
		}
		need := ls.used + 1
		want := need + headroom(limit, len(l.m.Live()))
		ch := make(chan struct{})
		ls.asking = ch
		l.mu.Unlock()
		l.ask(ctx, account, limit, need, want)
		l.mu.Lock()
		ls.asking = nil
		close(ch)
		l.mu.Unlock()
	}
	return false
}

// Give implements invoke.AccountSlots.
func (l *Ledger) Give(account string) {
	l.mu.Lock()
	if ls := l.leases[account]; ls != nil && ls.used > 0 {
		ls.used--
	}
	l.mu.Unlock()
}

// ask requests a lease of want slots from the account's ledger host and
// records the answer.
func (l *Ledger) ask(ctx context.Context, account string, limit, need, want int) {
	live := l.m.Live()
	home := l.m.Ranked(LedgerKey(account))[0]
	sent := time.Now()
	q := leaseReq{Host: l.self, Account: account, Limit: limit, Need: need, Want: want, Hosts: len(live)}
	var r leaseResp
	if home.ID == l.self {
		r = l.grant(q)
	} else {
		b, _ := json.Marshal(q)
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		msg, err := l.nc.RequestWithContext(rctx, ledgerSubject(home.ID), b)
		cancel()
		if err != nil {
			l.log.Debug("lease request failed", "account", account, "ledger", home.ID, "err", err)
			return
		}
		if json.Unmarshal(msg.Data, &r) != nil || r.Err != "" {
			return
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.leases[account]
	if ls == nil {
		return
	}
	ls.granted = r.Granted
	// Our copy lapses a little before the ledger's does.
	ls.expires = sent.Add(time.Duration(r.TTLms)*time.Millisecond - 250*time.Millisecond)
}

// answer serves a lease request as the account's ledger host.
func (l *Ledger) answer(m *nats.Msg) {
	var q leaseReq
	var r leaseResp
	if err := json.Unmarshal(m.Data, &q); err != nil {
		r.Err = err.Error()
	} else {
		r = l.grant(q)
	}
	b, _ := json.Marshal(r)
	_ = m.Respond(b)
}

// grant sets q.Host's lease of q.Account to q.Need slots if the limit
// leaves them after every other host's unexpired lease, plus headroom up
// to q.Want only while that still leaves a slot free for each live host
// (so that near the limit nobody holds slots it does not use, and an idle
// host's slots go back within a renewal). A host that does not see a
// majority of the cluster grants nothing.
func (l *Ledger) grant(q leaseReq) leaseResp {
	if !l.m.Quorate() {
		return leaseResp{Err: "ledger host is not in the majority"}
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.book[q.Account]
	if b == nil {
		b = map[string]held{}
		l.book[q.Account] = b
	}
	others := 0
	for h, v := range b {
		if now.After(v.expires) {
			delete(b, h)
			continue
		}
		if h != q.Host {
			others += v.n
		}
	}
	free := max(0, q.Limit-others)
	g := min(q.Need, free)
	if g == q.Need && q.Want > q.Need {
		g += max(0, min(q.Want-q.Need, free-q.Need-max(1, q.Hosts)))
	}
	if g == 0 {
		delete(b, q.Host)
	} else {
		b[q.Host] = held{n: g, expires: now.Add(LeaseTTL)}
	}
	return leaseResp{Granted: g, TTLms: LeaseTTL.Milliseconds()}
}

// renewer renews every lease this host holds or uses, at what it uses
// plus headroom (an idle account's lease shrinks to nothing).
func (l *Ledger) renewer() {
	defer l.wg.Done()
	t := time.NewTicker(renewEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		type want struct {
			account           string
			limit, need, want int
		}
		var ws []want
		hosts := len(l.m.Live())
		l.mu.Lock()
		for a, ls := range l.leases {
			if ls.granted == 0 && ls.used == 0 && time.Since(ls.lastUse) > LeaseTTL {
				delete(l.leases, a)
				continue
			}
			if ls.asking != nil {
				continue
			}
			w := ls.used
			// Headroom only while in use: an idle host hands its slots
			// back within a second, for the hosts that need them.
			if ls.used > 0 {
				w += headroom(l.limits[a], hosts)
			}
			ws = append(ws, want{a, l.limits[a], ls.used, w})
		}
		l.mu.Unlock()
		for _, w := range ws {
			ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
			l.ask(ctx, w.account, w.limit, w.need, w.want)
			cancel()
		}
	}
}

// Close stops renewing (leases lapse) and answering.
func (l *Ledger) Close() {
	l.closed.Do(func() {
		close(l.stop)
		if l.sub != nil {
			_ = l.sub.Unsubscribe()
		}
		l.wg.Wait()
	})
}
